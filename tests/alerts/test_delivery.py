"""The delivery worker against a real SMTP server and real HTTP receivers."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor.alerts.delivery.channels import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EmailChannel,
    JsonLinesChannel,
    WebhookChannel,
    verify_webhook_signature,
)
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.export import export_jsonl
from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.metrics import PipelineMetrics

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)  # 14:01:30 CEST in Paris
RAW_PAN = "4000056655665556"
MakeFailure = Callable[..., VipFailure]
StartReceiver = Callable[[list[int]], Awaitable[Any]]
TINY_BACKOFF: dict[str, float] = {"backoff_initial": 0.01, "backoff_max": 0.05, "poll_interval": 0.01}


def _email(smtp_server: Any) -> EmailChannel:
    return EmailChannel(smtp_server.host, smtp_server.port, sender="cardmon@bank.example", timeout=5)


def _hook_manager(url: str) -> Manager:
    return Manager(manager_id="RM-2", name="Bo Chen", webhook_url=url, timezone="Asia/Singapore")


async def _run_until(worker: DeliveryWorker, done: Callable[[], bool], timeout: float = 10) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task


async def test_manager_receives_one_email_per_alert(
    store_location: Path | str, make_failure: MakeFailure, smtp_server: Any
) -> None:
    """Three failures in one window and one 25 minutes later give the manager exactly two e-mails."""
    failures = [
        make_failure("ev-0", T0, card_ref=RAW_PAN, pan_masked=None),
        make_failure("ev-1", T0 + timedelta(minutes=3), amount_minor=2000),
        make_failure("ev-2", T0 + timedelta(minutes=6)),
        make_failure("ev-3", T0 + timedelta(minutes=31), currency="EUR", amount_minor=123450),
    ]
    with AlertStore(store_location) as store:
        store.record(failures)
        worker = DeliveryWorker(store, {"email": _email(smtp_server)}, **TINY_BACKOFF)
        assert await worker.deliver_due() == 2
        assert await worker.deliver_due() == 0
        alerts = store.list_alerts()
    mail = smtp_server.mail
    assert mail.recipients == [["claire.martin@bank.example"]] * 2
    by_subject = {m["Subject"]: m for m in mail.messages}
    grouped = by_subject[
        "[HIGH] Ada Lovelace (private): 3 failed transactions, latest cash withdrawal of $134.09 (51)"
    ]
    body = grouped.get_content()
    for fact in ("Ada Lovelace — private", "411111******1111", "Mon 06 May 2024, 14:07:30 CEST",
                 "$134.09", "$20.00", "response code 51 Insufficient funds",
                 "Call the client and offer an emergency cash advance.",
                 "3 failed transactions between 14:01 and 14:07 CEST"):
        assert fact in body
    assert "400005******5556" in body
    single = by_subject[
        "[HIGH] Ada Lovelace (private): cash withdrawal of €1,234.50 failed (51 Insufficient funds)"
    ]
    assert "Mon 06 May 2024, 14:32:30 CEST" in single.get_content()
    assert single["Message-ID"] == f"<{alerts[1].alert_id}.email@bank.example>"
    for message in mail.messages:
        assert RAW_PAN not in message.as_string() and RAW_PAN not in message.get_content()
    assert [(a.status, a.deliveries[0].status, a.deliveries[0].attempts) for a in alerts] == [
        ("notified", "sent", 1)] * 2


async def test_events_added_before_sending_are_in_the_message(
    store_location: Path | str, make_failure: MakeFailure, smtp_server: Any
) -> None:
    """A failure recorded after the alert was raised but before it was sent is in the e-mail."""
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0)])
        store.record([make_failure("ev-1", T0 + timedelta(minutes=1), amount_minor=777)])
        await DeliveryWorker(store, {"email": _email(smtp_server)}, **TINY_BACKOFF).deliver_due()
    (message,) = smtp_server.mail.messages
    assert "2 failed transactions" in message["Subject"]
    assert "$7.77" in message.get_content()


async def test_a_pending_delivery_survives_a_crash(
    store_location: Path | str, make_failure: MakeFailure, smtp_server: Any
) -> None:
    """An alert recorded by a process that stopped before sending is sent once after restart."""
    crashed = AlertStore(store_location)
    crashed.record([make_failure("ev-0", T0)])
    crashed.close()
    with AlertStore(store_location) as store:
        worker = DeliveryWorker(store, {"email": _email(smtp_server)}, **TINY_BACKOFF)
        assert await worker.deliver_due() == 1
        assert await worker.deliver_due() == 0
        assert store.list_alerts()[0].status == "notified"
    assert len(smtp_server.mail.messages) == 1


async def test_concurrent_passes_never_send_twice(
    store_location: Path | str, make_failure: MakeFailure, smtp_server: Any
) -> None:
    """Two workers on the same store, passing at the same time, send each alert once."""
    with AlertStore(store_location) as store:
        store.record([make_failure(f"ev-{i}", T0, customer_id=f"C-{i}") for i in range(5)])
        workers = [DeliveryWorker(store, {"email": _email(smtp_server)}, **TINY_BACKOFF) for _ in range(2)]
        sent = await asyncio.gather(*(w.deliver_due() for w in workers))
    assert sum(sent) == 5
    assert len(smtp_server.mail.messages) == 5


async def test_webhook_retries_until_accepted_with_one_idempotency_key(
    store_location: Path | str, make_failure: MakeFailure, http_receiver: StartReceiver
) -> None:
    """A receiver answering 500 twice then 200 gets three tries with the same key; the row is sent."""
    receiver = await http_receiver([500, 500, 200])
    results: list[tuple[str, str]] = []
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0, manager=_hook_manager(receiver.url))])
        alert_id = store.list_alerts()[0].alert_id
        async with httpx.AsyncClient() as client:
            worker = DeliveryWorker(store, {"webhook": WebhookChannel(client, timeout=5)},
                                    on_result=lambda ch, st, s: results.append((ch, st)),
                                    **TINY_BACKOFF)
            await _run_until(worker, lambda: len(results) == 3)
            assert await worker.deliver_due() == 0
        (delivery,) = store.list_alerts()[0].deliveries
    assert [h["Idempotency-Key"] for h, _ in receiver.requests] == [f"{alert_id}:webhook"] * 3
    assert results == [("webhook", "retry"), ("webhook", "retry"), ("webhook", "sent")]
    assert (delivery.status, delivery.attempts) == ("sent", 3)
    assert "HTTP 500" in (delivery.last_error or "")
    body = receiver.requests[-1][1]
    assert body["alert_id"] == alert_id and body["customer"]["name"] == "Ada Lovelace"
    assert body["events"][0]["occurred_at_local"] == "2024-05-06T20:01:30+08:00"


async def test_a_receiver_that_always_fails_ends_failed_with_the_error(
    store_location: Path | str, make_failure: MakeFailure, http_receiver: StartReceiver
) -> None:
    """Refused for its whole retry window, the row is failed at the window's end, keeps the last error and is not retried."""
    receiver = await http_receiver([503])
    results: list[str] = []
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0, manager=_hook_manager(receiver.url))])
        worker = DeliveryWorker(store, {"webhook": WebhookChannel(timeout=5)}, retry_for=0.3,
                                on_result=lambda ch, st, s: results.append(st), **TINY_BACKOFF)
        await _run_until(worker, lambda: "failed" in results)
        await asyncio.sleep(0.1)
        (alert,) = store.list_alerts()
        state = store.state_of(alert.alert_id)
    assert results[-1] == "failed" and set(results[:-1]) == {"retry"} and len(results) >= 2
    assert len(receiver.requests) == len(results)
    (delivery,) = alert.deliveries
    assert (delivery.status, delivery.attempts, alert.status, state) == (
        "failed", len(results), "failed", "failed")
    assert delivery.first_attempt_at is not None
    host = urlsplit(receiver.url).netloc
    assert delivery.last_error == f"DeliveryError: webhook at {host} answered HTTP 503"
    assert "s3cret" not in delivery.last_error


async def test_an_unreachable_smtp_relay_is_retried_later(
    store_location: Path | str, make_failure: MakeFailure, unused_port: int
) -> None:
    """A refused SMTP connection is a retry with the error kept and a later due time."""
    results: list[str] = []
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0)])
        channel = EmailChannel("127.0.0.1", unused_port, sender="cardmon@bank.example", timeout=2)
        worker = DeliveryWorker(store, {"email": channel}, backoff_initial=30, backoff_max=60,
                                on_result=lambda ch, st, s: results.append(st))
        before = datetime.now(UTC)
        assert await worker.deliver_due() == 0
        (delivery,) = store.list_alerts()[0].deliveries
    assert results == ["retry"]
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "SMTPConnectError" in (delivery.last_error or "")
    assert before + timedelta(seconds=30) <= delivery.next_attempt_at <= before + timedelta(seconds=62)


async def test_a_delivery_without_its_channel_fails_visibly(
    store_location: Path | str, make_failure: MakeFailure
) -> None:
    """A row for a channel the worker does not have fails at the end of its retry window, with the reason."""
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0)], sinks=["jsonl"], channels=[])
        worker = DeliveryWorker(store, {}, retry_for=0, **TINY_BACKOFF)
        await _run_until(worker, lambda: store.list_alerts()[0].deliveries[0].status == "failed")
        (delivery,) = store.list_alerts()[0].deliveries
    assert (delivery.channel, delivery.attempts) == ("jsonl", 1)
    assert delivery.last_error == "LookupError: no channel named 'jsonl' is configured"


def test_retry_delays_grow_exponentially_up_to_the_maximum(store_location: Path | str) -> None:
    """Retry delays double from the initial delay, plus jitter, and never pass the maximum."""
    with AlertStore(store_location) as store:
        worker = DeliveryWorker(store, {}, backoff_initial=1.0, backoff_max=10.0, backoff_jitter=0.5)
        for attempts, low in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
            assert low <= worker.retry_delay(attempts) <= min(low + 0.5, 10.0)
        assert worker.retry_delay(30) == 10.0


async def test_real_tabformer_failures_read_as_their_source_amounts(
    store_location: Path | str, make_failure: MakeFailure, smtp_server: Any, tabformer_csv: Path
) -> None:
    """Declined TabFormer transactions reach the manager with the amount as the source wrote it."""
    rows = []
    with tabformer_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            if row["Errors?"] and not row["Amount"].startswith("$-"):
                rows.append(row)
            if len(rows) == 3:
                break
    failures = []
    for i, row in enumerate(rows):
        # TabFormer times have no zone; they are read as UTC here. One client per row.
        hour, minute = map(int, row["Time"].split(":"))
        occurred = datetime(int(row["Year"]), int(row["Month"]), int(row["Day"]), hour, minute,
                            tzinfo=UTC)
        minor = int(Decimal(row["Amount"].lstrip("$")) * 100)
        failures.append(make_failure(f"tf-{i}", occurred, customer_id=f"U0-{i}",
                                     amount_minor=minor, response_meaning=row["Errors?"]))
    with AlertStore(store_location) as store:
        store.record(failures)
        assert await DeliveryWorker(store, {"email": _email(smtp_server)}).deliver_due() == 3
    bodies = sorted(m.get_content() for m in smtp_server.mail.messages)
    for row in rows:
        assert any(f"cash withdrawal of {row['Amount']}" in body and row["Errors?"] in body
                   for body in bodies)


class _SlowChannel:
    """A channel that never answers in time."""

    async def send(self, message: object) -> None:
        await asyncio.sleep(30)


async def test_a_send_that_hangs_counts_as_a_failed_attempt(
    store_location: Path | str, make_failure: MakeFailure
) -> None:
    """A send longer than send_timeout is cut off and recorded as a TimeoutError retry."""
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0)], channels=[], sinks=["slow"])
        worker = DeliveryWorker(store, {"slow": _SlowChannel()}, send_timeout=0.05, **TINY_BACKOFF)
        assert await worker.deliver_due() == 0
        (delivery,) = store.list_alerts()[0].deliveries
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "TimeoutError")


async def test_a_send_longer_than_the_lease_keeps_its_row(
    tmp_path: Path, make_failure: MakeFailure
) -> None:
    """A webhook answering after three leases is sent once: the worker renews its lease, so another worker never takes the row."""
    requests: list[str] = []

    async def slow_hook(request: web.Request) -> web.Response:
        requests.append(request.headers["Idempotency-Key"])
        await asyncio.sleep(1.0)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", slow_hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        with AlertStore(tmp_path / "alerts.db") as store:
            store.record([make_failure("ev-0", T0, manager=_hook_manager(url))], channels=["webhook"])
            workers = [DeliveryWorker(store, {"webhook": WebhookChannel()}, lease_seconds=0.3,
                                      **TINY_BACKOFF) for _ in range(2)]
            slow = asyncio.create_task(workers[0].deliver_due())
            while not requests:  # the first worker has claimed the row and is sending
                await asyncio.sleep(0.01)
            other_sent = 0
            while not slow.done():
                other_sent += await workers[1].deliver_due()
                await asyncio.sleep(0.05)
            assert (await slow, other_sent) == (1, 0)
            (delivery,) = store.list_alerts()[0].deliveries
    finally:
        await runner.cleanup()
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    assert len(requests) == 1


async def test_wake_delivers_without_waiting_for_the_poll_interval(
        store_location: Path | str, tmp_path: Path, make_failure: MakeFailure) -> None:
    """A worker polling every 30 s still delivers a new alert at once when it is woken."""
    from monitor.alerts.delivery.channels import JsonLinesChannel

    sink = tmp_path / "alerts.jsonl"
    with AlertStore(store_location) as store:
        worker = DeliveryWorker(store, {"jsonl": JsonLinesChannel(sink)}, poll_interval=30.0)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0.2)  # the first, empty pass is over; the worker now sleeps 30 s
        store.record([make_failure("ev-wake", datetime.now(UTC))], sinks=["jsonl"], channels=())
        worker.wake()
        try:
            for _ in range(100):
                if sink.exists() and sink.read_text().strip():
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
        assert len(sink.read_text().splitlines()) == 1, "the woken worker did not deliver within 2 s"


# -- signed webhooks ---------------------------------------------------------------------

SIGNING_SECRET = "whsec-test-0123456789"


async def _verifying_receiver(results: list[tuple[bool, bytes, dict[str, str]]]) -> tuple[web.AppRunner, str]:
    """A real receiver that checks the signature over the raw body, as a bank's would."""

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        valid = verify_webhook_signature(SIGNING_SECRET, body, request.headers.get(TIMESTAMP_HEADER),
                                         request.headers.get(SIGNATURE_HEADER))
        results.append((valid, body, dict(request.headers)))
        return web.Response(status=200 if valid else 401)

    app = web.Application()
    app.router.add_post("/hooks/rm", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/rm?token=s3cret"


async def test_a_signed_webhook_verifies_and_a_tampered_body_does_not(
    store_location: Path | str, make_failure: MakeFailure
) -> None:
    """The receiver verifies cardmon's HMAC over timestamp and exact body; a changed body or old timestamp fails."""
    seen: list[tuple[bool, bytes, dict[str, str]]] = []
    runner, url = await _verifying_receiver(seen)
    try:
        with AlertStore(store_location) as store:
            store.record([make_failure("ev-0", T0, manager=_hook_manager(url))])
            channel = WebhookChannel(timeout=5, signing_secret=SIGNING_SECRET)
            worker = DeliveryWorker(store, {"webhook": channel}, **TINY_BACKOFF)
            assert await worker.deliver_due() == 1
            (alert,) = store.list_alerts()
        ((valid, body, headers),) = seen
        assert valid and alert.deliveries[0].status == "sent"
        assert headers["Idempotency-Key"] == f"{alert.alert_id}:webhook"
        assert headers[SIGNATURE_HEADER].startswith("sha256=") and len(headers[SIGNATURE_HEADER]) == 71
        assert json.loads(body)["alert_id"] == alert.alert_id
        tampered = body.replace(b"Ada Lovelace", b"Eve Mallory")
        replay = {k: headers[k] for k in ("Content-Type", TIMESTAMP_HEADER, SIGNATURE_HEADER)}
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, content=tampered, headers=replay)
        assert answer.status_code == 401 and seen[-1][0] is False
        stamp = int(headers[TIMESTAMP_HEADER])
        assert not verify_webhook_signature(SIGNING_SECRET, body, str(stamp), headers[SIGNATURE_HEADER],
                                            now=stamp + 301)
        assert not verify_webhook_signature("another-secret", body, str(stamp), headers[SIGNATURE_HEADER],
                                            now=stamp)
        assert not verify_webhook_signature(SIGNING_SECRET, body, None, headers[SIGNATURE_HEADER])
    finally:
        await runner.cleanup()


async def test_an_unsigned_webhook_is_refused_by_a_verifying_receiver(
    store_location: Path | str, make_failure: MakeFailure
) -> None:
    """Without the secret no signature headers are sent, and the verifying receiver answers 401."""
    seen: list[tuple[bool, bytes, dict[str, str]]] = []
    runner, url = await _verifying_receiver(seen)
    try:
        message_channel = WebhookChannel(timeout=5)
        with AlertStore(store_location) as store:
            store.record([make_failure("ev-0", T0, manager=_hook_manager(url))])
            worker = DeliveryWorker(store, {"webhook": message_channel}, **TINY_BACKOFF)
            assert await worker.deliver_due() == 0
        ((valid, _, headers),) = seen
        assert not valid and SIGNATURE_HEADER not in headers
    finally:
        await runner.cleanup()


# -- fallback after the last attempt -----------------------------------------------------


def _sample(registry: CollectorRegistry, channel: str, status: str) -> float | None:
    return registry.get_sample_value("cardmon_alerts_total", {"channel": channel, "status": status})


async def test_after_the_last_attempt_the_alert_goes_to_the_fallback_and_is_failed(
    store_location: Path | str, tmp_path: Path, make_failure: MakeFailure, http_receiver: StartReceiver
) -> None:
    """A webhook refusing every try: at the end of the retry window the fallback file gets the alert marked undelivered; the row is failed in store, export and metrics."""
    receiver = await http_receiver([503])
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    fallback_file = tmp_path / "undelivered.jsonl"
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0, manager=_hook_manager(receiver.url))])
        worker = DeliveryWorker(store, {"webhook": WebhookChannel(timeout=5)}, retry_for=0.2,
                                fallback=JsonLinesChannel(fallback_file), fallback_after=60,
                                on_result=metrics.alert_delivery, **TINY_BACKOFF)
        await _run_until(worker, lambda: store.list_alerts()[0].status == "failed")
        (alert,) = store.list_alerts()
        exported = io.StringIO()
        export_jsonl(store, exported)
    (delivery,) = alert.deliveries
    assert delivery.status == "failed" and delivery.attempts == len(receiver.requests) >= 2
    assert delivery.last_error is not None and delivery.last_error.endswith("sent to the fallback channel")
    assert "HTTP 503" in delivery.last_error and "s3cret" not in delivery.last_error
    assert delivery.fallback_at is not None
    (line,) = fallback_file.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["alert_id"] == alert.alert_id
    undelivered = record["undelivered"]
    assert (undelivered["channel"], undelivered["attempts"], undelivered["final"]) == (
        "webhook", delivery.attempts, True)
    assert undelivered["error"] == delivery.last_error.split(" — ")[0]
    assert record["subject"].startswith("[HIGH] Ada Lovelace")
    assert json.loads(exported.getvalue())["deliveries"][0]["status"] == "failed"
    assert _sample(registry, "webhook", "failed") == 1
    assert _sample(registry, "webhook", "retry") == delivery.attempts - 1
    assert _sample(registry, "fallback", "sent") == 1


async def test_the_operations_mailbox_as_fallback_gets_an_undelivered_notice(
    store_location: Path | str, make_failure: MakeFailure, http_receiver: StartReceiver, smtp_server: Any
) -> None:
    """With an e-mail fallback to operations, ops receives one mail naming the failed channel and the alert when the delivery gives up."""
    receiver = await http_receiver([500])
    ops = EmailChannel(smtp_server.host, smtp_server.port, sender="cardmon@bank.example",
                       recipient="ops@bank.example", timeout=5)
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0, manager=_hook_manager(receiver.url))])
        worker = DeliveryWorker(store, {"webhook": WebhookChannel(timeout=5)}, retry_for=0,
                                fallback=ops, **TINY_BACKOFF)
        assert await worker.deliver_due() == 0
        (alert,) = store.list_alerts()
    assert smtp_server.mail.recipients == [["ops@bank.example"]]
    (mail,) = smtp_server.mail.messages
    assert mail["Subject"].startswith("[UNDELIVERED via webhook] [HIGH] Ada Lovelace (private)")
    body = mail.get_content()
    assert "gave up delivering this message to Bo Chen via webhook after 0 s (1 attempt(s))" in body
    assert "Ada Lovelace" in body and "s3cret" not in body
    assert mail["Message-ID"] == f"<{alert.alert_id}.fallback.webhook@bank.example>"
    assert alert.status == "failed"


async def test_a_failing_fallback_is_recorded_not_hidden(
    store_location: Path | str, make_failure: MakeFailure, http_receiver: StartReceiver, unused_port: int
) -> None:
    """When the fallback fails too, the row is failed with both errors and the fallback failure is counted."""
    receiver = await http_receiver([500])
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    dead_relay = EmailChannel("127.0.0.1", unused_port, sender="cardmon@bank.example",
                              recipient="ops@bank.example", timeout=2)
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-0", T0, manager=_hook_manager(receiver.url))])
        worker = DeliveryWorker(store, {"webhook": WebhookChannel(timeout=5)}, retry_for=0,
                                fallback=dead_relay, on_result=metrics.alert_delivery, **TINY_BACKOFF)
        assert await worker.deliver_due() == 0
        (delivery,) = store.list_alerts()[0].deliveries
    assert delivery.status == "failed"
    assert "HTTP 500" in (delivery.last_error or "")
    assert "fallback failed: SMTPConnectError" in (delivery.last_error or "")
    assert _sample(registry, "webhook", "failed") == 1
    assert _sample(registry, "fallback", "failed") == 1
