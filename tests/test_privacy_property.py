"""Property (Hypothesis): no PAN form, in any field, reaches any output of cardmon.

Hypothesis draws Luhn-valid PANs of 13-19 digits and writes each in a form of issue 8
(any digit script, card groupings with any separators, invisible characters inside,
embedded in a longer token) into any text field of a message: identity and
descriptive fields, the ISO 8583 ids, the enums, the raw ``pan`` field (any JSON
type), an unknown field, the Kafka key; some messages are sent as UTF-16 or cp1252.
The messages go through the real pipeline (decode, classify, VIP lookup, metrics) into
the real alert store, and then every output is read back: the store (every table, and
the SQLite file's bytes), the logs (DEBUG), the /metrics exposition, the dead-letter
copy and its headers, the ``cardmon alerts export`` JSON Lines, the rendered e-mail,
webhook and Apprise messages, and the API answers served for real on 127.0.0.1. A
second test sends such messages through the real broker and consumer and reads the
real dead-letter topic.

One more documented exception: a ``merchant_id`` that is wholly an ASCII number of
13-15 or 17-19 digits is a merchant ID, not a PAN (ISO 8583 field 42 is 15 digits), so
such a value is drawn inside a token instead.

An output passes when, read as a person would read it (escapes decoded, NFKC, every
digit as ASCII, separators, controls, invisible and combining characters dropped),
it holds none of the PANs' digit strings. Identity fields read a run glued to a-f
letters inside a hex token as hex (monitor.privacy), so the drawn tokens never glue a
PAN to a-f letters alone: that documented limit is tested in tests/test_privacy.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from monitor.alerts.delivery.channels import EmailChannel, WebhookChannel
from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.export import export_jsonl
from monitor.alerts.messages.alert import render_delivery
from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from monitor.dead_letter_copy import dead_letter_copy
from monitor.kafka.clients import ensure_topics
from monitor.metrics import PipelineMetrics
from monitor.metrics._exposition import Exposition
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.consumer import TransactionConsumer
from monitor.pipeline.decoder import decode_batch, decode_frame
from monitor.pipeline.processor import BatchProcessor
from monitor.pipeline.selection import AlertPolicy
from monitor.pipeline.vips import RegistryLoader
from monitor.privacy import luhn_valid, scrub_pans
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.helpers import event, read_topic, write_registry

API_TOKEN = "property-test-token-0123456789abcdef"
LINK_SECRET = "property-test-link-secret-0123456789"

# --- PAN forms -------------------------------------------------------------------------

#: Zero of each digit script the forms use (Unicode decimal digits, category Nd).
SCRIPTS: dict[str, int] = {
    "ascii": 0x30, "full-width": 0xFF10, "arabic-indic": 0x0660, "extended-arabic-indic": 0x06F0,
    "devanagari": 0x0966, "bengali": 0x09E6, "thai": 0x0E50, "mathematical-bold": 0x1D7CE,
    "mathematical-monospace": 0x1D7F6,
}
#: Digits that NFKC folds to ASCII digits without being decimal digits themselves.
FOLDED: dict[str, str] = {"superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹", "subscript": "₀₁₂₃₄₅₆₇₈₉",
                          "circled": "⓪①②③④⑤⑥⑦⑧⑨"}
SEPARATORS = [" ", "-", ".", "\u00a0", "\u2007", "\u2009", "\u202f", "\u205f", "\u3000",
              "\u2013", "\u2014", "\u2212", "\u00b7", "\u2022", "\uff0e", "\u30fb", "\n", "\t",
              "_", "/", ":", ",", "+", "|"]
INVISIBLES = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u0301", "\u202e"]
# No prefix ends, and no suffix starts, with a digit or an a-f letter (see the module doc).
PREFIXES = ["", "", "tok_", "ref ", "card:", "PAN=", "x", "Zoë ", "#", "ref 99 ", "№", "(", "\u202e"]
SUFFIXES = ["", "", "xyz", "_exp", " FR", "!", ")", " 12/25", "-z", "\u202c", " 💳"]


def luhn_pan(body: str) -> str:
    """``body`` followed by the check digit that makes it Luhn-valid."""
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


@st.composite
def pans(draw: st.DrawFn) -> str:
    """A Luhn-valid PAN of 13 to 19 ASCII digits."""
    length = draw(st.integers(13, 19))
    # A card's first digit is its major industry identifier, 1-9 (ISO/IEC 7812-1). No run
    # of eight equal digits: the reader below joins digits across dots, so such a "PAN"
    # (40000000000003) would be read in a float's rounding noise (2940.0000000000003).
    first = draw(st.sampled_from("123456789"))
    body = draw(st.text("0123456789", min_size=length - 2, max_size=length - 2)
                .filter(lambda digits: re.search(r"(.)\1{7}", first + digits) is None))
    return luhn_pan(first + body)


def groups_of(pan: str, layout: str) -> list[str]:
    """The PAN cut as card numbers are printed: one run, 4-4-4-x, or 4-6-x (14 and 15 digits)."""
    if layout == "run":
        return [pan]
    if layout == "4-6" and len(pan) in (14, 15):
        return [pan[:4], pan[4:10], pan[10:]]
    return [pan[i:i + 4] for i in range(0, len(pan), 4)]


@dataclass(frozen=True)
class Form:
    """How to write one PAN (plain data, so random.Random can draw it too)."""

    scripts: tuple[str, ...]  # one per digit
    layout: str
    gaps: tuple[str, ...]  # the separators of each gap
    invisibles: tuple[tuple[int, str], ...]  # (position, character) inserted
    prefix: str
    suffix: str

    def write(self, pan: str) -> str:
        digits = [FOLDED[s][int(d)] if s in FOLDED else chr(SCRIPTS[s] + int(d))
                  for s, d in zip(self.scripts, pan)]
        parts: list[str] = []
        position = 0
        for index, group in enumerate(groups_of(pan, self.layout)):
            if index:
                parts.append(self.gaps[(index - 1) % len(self.gaps)])
            parts.extend(digits[position:position + len(group)])
            position += len(group)
        chars = list("".join(parts))
        for at, char in self.invisibles:
            chars.insert(at % (len(chars) + 1), char)
        return self.prefix + "".join(chars) + self.suffix


@st.composite
def forms(draw: st.DrawFn, length: int) -> Form:
    """A way to write a PAN of ``length`` digits (see :class:`Form`)."""
    names = list(SCRIPTS) + list(FOLDED)
    if draw(st.booleans()):
        scripts = (draw(st.sampled_from(names)),) * length
    else:
        scripts = tuple(draw(st.lists(st.sampled_from(names), min_size=length, max_size=length)))
    layout = draw(st.sampled_from(["run", "4-4", "4-4", "4-6"]))
    gaps = tuple(draw(st.lists(st.text(st.sampled_from(SEPARATORS), min_size=1, max_size=3),
                               min_size=1, max_size=5)))
    invisibles = tuple(draw(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(INVISIBLES)),
                                     max_size=3)))
    return Form(scripts, layout, gaps, invisibles, draw(st.sampled_from(PREFIXES)),
                draw(st.sampled_from(SUFFIXES)))


def random_form(rng: random.Random, length: int) -> Form:
    """The same kind of form drawn with ``random`` (for the broker test)."""
    names = list(SCRIPTS) + list(FOLDED)
    scripts = (tuple([rng.choice(names)] * length) if rng.random() < 0.5
               else tuple(rng.choice(names) for _ in range(length)))
    gaps = tuple("".join(rng.choice(SEPARATORS) for _ in range(rng.randint(1, 3)))
                 for _ in range(rng.randint(1, 5)))
    invisibles = tuple((rng.randint(0, 40), rng.choice(INVISIBLES)) for _ in range(rng.randint(0, 3)))
    return Form(scripts, rng.choice(["run", "4-4", "4-6"]), gaps, invisibles,
                rng.choice(PREFIXES), rng.choice(SUFFIXES))


#: Where a PAN form can be put: every field of the contract, an unknown one, the raw
#: pan (as text or as a JSON number), a decline reason, and the Kafka key.
PLACES = ["event_id", "terminal_id", "card_ref", "customer_id", "merchant_id", "merchant_name",
          "city", "region", "branch_id", "decline_reasons", "mti", "stan", "rrn", "processing_code",
          "response_code", "currency", "pan_masked", "channel", "txn_type", "status", "entry_mode",
          "occurred_at", "pan", "pan_number", "note", "key"]
# Weighted towards the free-text and identity fields, where a PAN is processed, not refused.
PLACE_WEIGHTS = {"merchant_name": 4, "city": 3, "region": 2, "branch_id": 2, "decline_reasons": 2,
                 "event_id": 2, "card_ref": 3, "customer_id": 2, "merchant_id": 2, "pan": 3, "key": 2}


@dataclass
class Message:
    """One drawn message: its value, its Kafka key and the PANs written into it."""

    value: bytes
    key: bytes
    pans: list[str]


def build_message(number: int, placed: list[tuple[str, str, Any]], encoding: str) -> Message:
    """A VIP failure event (so it alerts when valid) with each ``(place, pan, text)`` written in."""
    # Each message in its own 10-minute window, so valid ones make new alerts and messages.
    at = (datetime(2026, 3, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=11 * number)).isoformat()
    fields: dict[str, Any] = event(f"ev-{number}", occurred_at=at, customer_id="C-VIP",
                                   card_ref=f"tok_vip_{number % 3}",
                                   response_code="91", merchant_id="MER-77",
                                   merchant_name="CAFE DU PORT", region="ARA", branch_id="LYO-01")
    key = fields["terminal_id"]
    for place, pan, text in placed:
        if place == "key":
            key = text
        elif place == "decline_reasons":
            fields["decline_reasons"] = ["Bad PIN", text]
        else:
            fields[place] = text
    value = json.dumps(fields, ensure_ascii=False)
    try:
        encoded = value.encode(encoding)
    except UnicodeEncodeError:
        encoded = value.encode()
    return Message(encoded, key.encode(), [pan for _, pan, _ in placed])


_numbers = iter(range(10**9))  # event IDs and 10-minute windows, new for every message


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A message with one to three PAN forms in drawn places."""
    # Not drawn (so alerts do not pile up in a few windows); nothing drawn depends on it.
    number = next(_numbers)
    placed = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        place = draw(st.sampled_from([p for p in PLACES for _ in range(PLACE_WEIGHTS.get(p, 1))]))
        pan = draw(pans())
        text: Any = draw(forms(len(pan))).write(pan)
        if place == "pan":
            # The raw pan field, of any JSON type, Luhn-valid or not: its digits must never
            # show (the decoder keeps the first six and last four in pan_masked only).
            if draw(st.booleans()):
                pan = pan[:-1] + str((int(pan[-1]) + 1) % 10)  # fails Luhn now
            text = draw(st.sampled_from([pan, int(pan), [pan], {"number": pan}, text]))
        if place == "merchant_id" and re.fullmatch("[0-9]+", text) and len(pan) != 16:
            # A merchant ID that is wholly a number of 13-15 or 17-19 digits is an ID by
            # contract (ISO 8583 field 42 is 15 digits, TabFormer's are 19): see
            # monitor.pipeline.contract.MERCHANT_ID_PAN_DIGITS. Any other form is drawn as it is.
            text = "MID" + text
        placed.append((place, pan, text))
    encoding = draw(st.sampled_from(["utf-8"] * 8 + ["utf-16", "cp1252"]))
    message = build_message(number, placed, encoding)
    if draw(st.integers(0, 9)) == 0:  # cut short, as a broken producer would
        message.value = message.value[:len(message.value) * draw(st.integers(1, 999)) // 1000]
    return message


# --- reading outputs as a person would ------------------------------------------------

_ESCAPE = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})|\\u([0-9a-f]{4})|\\x([0-9a-f]{2})"
                     r"|\\U([0-9a-f]{8})", re.IGNORECASE)
_DOTS = ".·•․‧∙⋅・﹒．｡･"
# The other separators the generator writes between digit groups. A reader drops them
# only between a PAN's own printed groups (dropping them everywhere would join times
# such as 09:30:00.000000+00:00 into long digit runs that no person reads as a card).
_OTHER_SEPARATORS = "[_/:,+|]{0,3}"


def _printed(pan: str) -> re.Pattern[str]:
    """``pan`` as printed in groups (4-4-4-x, 4-6-x) with any of the other separators between them."""
    layouts = {tuple(groups_of(pan, layout)) for layout in ("4-4", "4-6")}
    return re.compile("|".join(_OTHER_SEPARATORS.join(groups) for groups in layouts))


def _unescape(match: re.Match[str]) -> str:
    high, low, four, two, eight = match.groups()
    if high:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00))
    code = int(four or two or eight, 16)
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else match.group(0)


def readable(text: str) -> str:
    """``text`` as a reader sees its digits: escapes decoded, NFKC, separators and invisibles dropped."""
    text = unicodedata.normalize("NFKC", _ESCAPE.sub(_unescape, text))
    out = []
    for char in text:
        if char.isdecimal():
            out.append(str(unicodedata.decimal(char)))
            continue
        category = unicodedata.category(char)
        if category[0] in "ZCM" or category == "Pd" or char in _DOTS:
            continue
        out.append(char)
    return "".join(out)


def texts_of(data: bytes) -> list[str]:
    """Every way a reader could decode ``data``: UTF-8, cp1252 and, for NUL-holding data, UTF-16."""
    found = [data.decode("utf-8", "replace"), data.decode("cp1252", "replace")]
    if b"\x00" in data:
        found += [data.decode("utf-16-le", "replace"), data.decode("utf-16-be", "replace"),
                  data[1:].decode("utf-16-le", "replace")]
    return found


def assert_no_pan(output: str | bytes, pans: Iterable[str], where: str) -> None:
    """No PAN of ``pans`` is readable in ``output``."""
    for text in texts_of(output) if isinstance(output, bytes) else [output]:
        seen = readable(text)
        for pan in pans:
            at = seen.find(pan)
            assert at < 0, f"PAN {pan} reached {where}: …{seen[max(0, at - 40):at + 60]}…"
            printed = _printed(pan).search(seen)
            at = printed.start() if printed else -1
            assert at < 0, f"PAN {pan} reached {where}: …{seen[max(0, at - 40):at + 60]}…"


# --- the pipeline and its outputs -----------------------------------------------------


@dataclass
class Run:
    """The real pipeline with a real alert store, and what went through it."""

    store: AlertStore
    processor: BatchProcessor
    metrics_registry: CollectorRegistry
    links: AckLinks
    pans: list[str] = field(default_factory=list)
    # What the drawn messages exercised (so the test proves it reached each path).
    seen: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.seen[what] = self.seen.get(what, 0) + n


def make_run(location: Path | str, tmp_path: Path) -> Run:
    customers, managers = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\nC-VIP,Hélène Martin,private,M-1,tok_vip_0;tok_vip_1;tok_vip_2",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone,channels\n"
        "M-1,Paul Durand,paul@bank.test,,https://hooks.bank.test/m1,,Europe/Paris,"
        '"high=email,webhook,apprise:json://hooks.bank.test/apprise;low=email"',
    )
    loader = RegistryLoader(customers, managers)
    loader.load()
    registry = CollectorRegistry()
    processor = BatchProcessor(codes=ResponseCodeTable.load(rules_path("response_codes.yaml")),
                               policy=AlertPolicy.load(rules_path("alerting.yaml")),
                               registry=loader, metrics=PipelineMetrics(registry))
    return Run(AlertStore(location), processor, registry, AckLinks(LINK_SECRET, "http://127.0.0.1:1"))


def process(run: Run, batch: list[Message]) -> None:
    """One batch through the pipeline and the store; every per-batch output checked."""
    values: list[bytes | None] = [m.value for m in batch]
    pans = [pan for m in batch for pan in m.pans]
    run.pans.extend(pans)
    result = run.processor.process(values)
    decoded = decode_frame(values)
    run.count("events", result.events)
    run.count("pan_masked", sum(n for (_, change), n in decoded.sanitised.items() if change == "pan"))
    for rejection in result.rejections:
        run.count(rejection.reason)
        message = batch[rejection.index]
        assert_no_pan(rejection.detail, message.pans, f"the {rejection.reason} rejection detail")
        assert_no_pan(dead_letter_copy(message.value), message.pans, "a dead-letter copy")
        assert_no_pan(scrub_pans(message.key), message.pans, "a dead-letter key")
    assert_no_pan(repr(result.failures), pans, "the VIP failures")
    if result.failures:
        run.store.record(result.failures, sinks=("jsonl",), channels=("email", "webhook", "apprise"))
        run.count("failures", len(result.failures))
    email = EmailChannel("127.0.0.1", sender="cardmon@bank.test")
    webhook = WebhookChannel(signing_secret="whsec-0123456789abcdef")
    for delivery in run.store.claim_due(datetime.now(UTC) + timedelta(days=1), limit=500):
        message = render_delivery(run.store, delivery, links=run.links)
        run.count(f"rendered:{delivery.channel.partition(':')[0]}")
        where = f"the {delivery.channel} message"
        # Apprise sends exactly the subject (title) and the text (body).
        assert_no_pan(message.subject + "\n" + message.text, pans, where)
        assert_no_pan(webhook.body(message), pans, f"{where} (webhook body)")
        if message.email:
            mail = email.build(message)
            assert_no_pan(mail.as_bytes(), pans, f"{where} (e-mail as sent)")
            assert_no_pan(str(mail["Subject"]) + mail.get_content(), pans, f"{where} (e-mail as read)")


def dump_store(store: AlertStore) -> str:
    """Every row of every table of the store, as text."""
    conn = store._conn  # the test reads the raw tables on purpose
    if type(conn).__name__.startswith("Sqlite"):
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
    else:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()]
    assert "alert_events" in tables
    lines = []
    for table in tables:
        for row in conn.execute(f'SELECT * FROM "{table}"').fetchall():  # names from the catalogue
            lines.append(table + ": " + " | ".join(str(value) for value in row))
    return "\n".join(lines)


async def api_answers(store: AlertStore, links: AckLinks, pans: list[str]) -> list[tuple[str, str]]:
    """Every GET the API serves for the store's alerts (and an ack whose note holds PAN forms)."""
    server = await start_api(build_api(store, api_token=API_TOKEN, links=links), host="127.0.0.1")
    answers: list[tuple[str, str]] = []
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    rng = random.Random(1)
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            async def get(path: str) -> str:
                async with session.get(server.url + path) as response:
                    assert response.status == 200, (path, response.status)
                    text = await response.text()
                    answers.append((path, text))
                    return text

            listing = json.loads(await get("/alerts?limit=500"))
            alert_ids = [a["alert_id"] for a in listing["alerts"]]
            assert alert_ids, "the run recorded no alert"
            first = alert_ids[0]
            note = " / ".join(random_form(rng, len(pan)).write(pan) for pan in pans[:5])
            async with session.post(f"{server.url}/alerts/{first}/ack",
                                    json={"by": f"RM {note}", "note": note}) as response:
                assert response.status == 200
                answers.append((f"POST /alerts/{first}/ack", await response.text()))
            for alert_id in alert_ids:
                await get(f"/alerts/{alert_id}")
                token = links.url(alert_id, "M-1").rpartition("token=")[2]
                await get(f"/alerts/{alert_id}/ack?token={token}")
            await get("/incidents?limit=500")
    finally:
        await server.close()
    return answers


def final_checks(run: Run, caplog: pytest.LogCaptureFixture, location: Path | str) -> None:
    """The cumulative outputs: logs, metrics, store, export and API hold no PAN drawn in the run."""
    pans = run.pans
    assert_no_pan("\n".join(r.getMessage() for r in caplog.records) + caplog.text, pans, "the logs")
    metrics_text = b"".join(Exposition(run.metrics_registry).render())
    assert_no_pan(metrics_text, pans, "/metrics")
    assert b"cardmon_event_fields_sanitised_total" in metrics_text
    out = io.StringIO()
    export_jsonl(run.store, out)
    assert_no_pan(out.getvalue(), pans, "cardmon alerts export")
    for path, text in asyncio.run(api_answers(run.store, run.links, pans)):
        assert_no_pan(text, pans, f"the API answer to {path}")
    assert_no_pan(dump_store(run.store), pans, "the alert store")
    run.store.close()
    if isinstance(location, Path):
        for file in location.parent.glob(location.name + "*"):  # the database and its WAL
            assert_no_pan(file.read_bytes(), pans, f"the SQLite file {file.name}")


def every_path() -> list[Message]:
    """One message per path of the decoder and the outputs, whatever the draws reach."""
    pan = "4111111111111111"
    grouped = "4111_1111/1111:1111"
    cut = build_message(next(_numbers), [("city", pan, grouped)], "utf-8")
    cut.value = cut.value[: len(cut.value) // 2]
    return [
        build_message(next(_numbers), [("merchant_name", pan, f"REF {grouped}")], "utf-8"),
        build_message(next(_numbers), [("card_ref", pan, f"tok_{grouped}")], "utf-8"),
        build_message(next(_numbers), [("event_id", pan, f"ev-{grouped}")], "utf-8"),
        build_message(next(_numbers), [("stan", pan, grouped)], "utf-8"),
        build_message(next(_numbers), [("pan", pan, pan)], "utf-8"),
        build_message(next(_numbers), [("region", pan, grouped)], "utf-16"),
        cut,
    ]


def property_test(run: Run, examples: int) -> Callable[[], None]:
    """The Hypothesis test over batches of drawn messages, deterministic for CI."""

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def batches(data: st.DataObject) -> None:
        process(run, data.draw(st.lists(messages(), min_size=1, max_size=4)))

    return batches


def test_no_pan_form_reaches_any_output(store_location: Path | str, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """PAN forms drawn into every field never reach the store, logs, metrics, dead letters, export, API or messages."""
    caplog.set_level(logging.DEBUG)
    run = make_run(store_location, tmp_path)
    sqlite = isinstance(store_location, Path)
    process(run, every_path())  # each path for sure; the drawn batches add the breadth
    property_test(run, 120 if sqlite else 30)()
    # The draws reached every path: rejected, processed with masks, alerted, rendered.
    paths = ["events", "pan_masked", "failures", "rendered:email", "rendered:webhook",
             "rendered:apprise"]
    if sqlite:
        paths += ["pan_in_field", "invalid_field", "pan_in_card_ref", "raw_pan", "invalid_utf8",
                  "invalid_json"]
    for what in paths:
        assert run.seen.get(what, 0) > 0, (what, run.seen)
    final_checks(run, caplog, store_location)


def broker_messages(count: int, seed: int = 8) -> list[Message]:
    """``count`` messages with PAN forms in every place, drawn with ``random`` (same forms as above)."""
    rng = random.Random(seed)
    out = []
    for number in range(count):
        placed: list[tuple[str, str, Any]] = []
        for place in (PLACES[number % len(PLACES)], rng.choice(PLACES)):
            length = rng.randint(13, 19)
            pan = luhn_pan("".join(rng.choice("0123456789") for _ in range(length - 1)))
            text: Any = random_form(rng, length).write(pan)
            if place == "merchant_id" and re.fullmatch("[0-9]+", text) and length != 16:
                text = "MID" + text  # a wholly numeric merchant ID is an ID (see above)
            if place == "pan":
                if rng.random() < 0.5:
                    pan = pan[:-1] + str((int(pan[-1]) + 1) % 10)  # fails Luhn now
                text = rng.choice([pan, int(pan), [pan], text])
            placed.append((place, pan, text))
        out.append(build_message(10_000 + number, placed, rng.choice(["utf-8"] * 8 + ["utf-16", "cp1252"])))
    return out


@pytest.mark.integration
async def test_no_pan_form_reaches_the_real_dead_letter_topic(kafka_bootstrap: str, unique_name: str,
                                                              tmp_path: Path) -> None:
    """Through the real broker and consumer, no dead-letter value, key or header holds a PAN form."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    await ensure_topics(settings, partitions=2)
    batch = broker_messages(120)
    pans = [pan for m in batch for pan in m.pans]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for message in batch:
        producer.produce(settings.topic, value=message.value, key=message.key)
    assert producer.flush(10) == 0
    decoded = decode_batch([m.value for m in batch])
    dead_expected = len({r.index for r in decoded.rejections})  # raw_pan events are both
    assert 0 < dead_expected < len(batch) and decoded.events

    run = make_run(tmp_path / "alerts.db", tmp_path)
    consumer = TransactionConsumer(
        settings, processor=run.processor, metrics=None,
        record_failures=lambda failures, _incidents: asyncio.to_thread(run.store.record, failures),
    )
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=dead_expected,
                                timeout=60)
        await wait_until(lambda: consumer.events == len(decoded.events), timeout=60,
                         what="every valid event processed")
    finally:
        stop.set()
        await task
        await consumer.stop()
    assert len(dead) == dead_expected
    for record in dead:
        assert_no_pan(record.value, pans, "a dead-letter value on the topic")
        assert_no_pan(record.key or b"", pans, "a dead-letter key on the topic")
        for name, header in record.headers:
            assert_no_pan(header, pans, f"the dead-letter header {name}")
    assert_no_pan(dump_store(run.store), pans, "the alert store")
    run.store.close()
