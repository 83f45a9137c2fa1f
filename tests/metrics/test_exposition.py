"""The fast exposition: frame families rendered from polars read back exactly like prometheus_client's text."""

from __future__ import annotations

import math
import subprocess
import threading
import zlib
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries

from monitor.metrics import Exposition, FrameCollector, FrameFamily, PipelineMetrics, serve

#: Terminal IDs no acquirer would issue, but a label must survive: every character the
#: text format escapes, characters of its syntax, and non-ASCII text.
HOSTILE_IDS = (
    'ATM"00042', "POS\\0007", "T\\\"X", "line\nbreak", "\n# TYPE x counter\n",
    'x"} 1\ny{a="', "Zürich-ÄTM", "東京POS01", "emoji🏧", "a=b,c", "", " ",
    "trailing\\",
)
HEALTH_HELP = "Health state per terminal: 0 ok, 1 degraded, 2 failing, 3 silent, 4 offline."


def _batch(terminal_ids: list[str], *, minute: int = 0, outcomes: list[str] | None = None) -> pl.DataFrame:
    at = datetime(2024, 3, 1, 10, minute, 0, 123_457, tzinfo=UTC)
    n = len(terminal_ids)
    return pl.DataFrame(
        {
            "occurred_at": [at + timedelta(microseconds=i) for i in range(n)],
            "channel": ["ATM"] * n,
            "terminal_id": terminal_ids,
            "outcome": outcomes or ["technical" if i % 3 else "approved" for i in range(n)],
            "tier": [None] * n,
            "latency_ms": [120.5] * n,
        },
        schema_overrides={"occurred_at": pl.Datetime("us", "UTC"), "tier": pl.String},
    )


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels; duplicates fail."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"series exposed twice: {key}"
            found[key] = sample.value
    return found


def _families(text: str) -> list[tuple[str, str, str]]:
    return [(f.name, f.type, f.documentation) for f in text_string_to_metric_families(text)]


def _same(fast: dict[tuple[str, tuple[tuple[str, str], ...]], float],
          slow: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
    assert fast.keys() == slow.keys()
    for key, value in slow.items():
        if math.isnan(value):
            assert math.isnan(fast[key]), key
        else:
            assert fast[key] == value and math.copysign(1, fast[key]) == math.copysign(1, value), key


def _body(registry: CollectorRegistry) -> str:
    return b"".join(Exposition(registry).render()).decode()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> PipelineMetrics:
    """PipelineMetrics with three batches of ordinary and hostile terminal IDs observed."""
    metrics = PipelineMetrics(registry, version="9.9.9-test")
    ids = [f"T{i:07d}" for i in range(50)] + list(HOSTILE_IDS)
    metrics.observe_batch(_batch(ids))
    metrics.observe_batch(_batch(ids[::2], minute=5, outcomes=["card"] * len(ids[::2])))
    metrics.observe_batch(_batch(list(HOSTILE_IDS), minute=9))
    return metrics


def test_fast_text_reads_back_as_the_reference_samples(registry, metrics):
    """Served text parses into the very samples, families and HELP of generate_latest, hostile IDs included."""
    fast, slow = _body(registry), generate_latest(registry).decode()
    _same(_samples(fast), _samples(slow))
    assert sorted(_families(fast)) == sorted(_families(slow))
    served = _samples(fast)
    for terminal_id in HOSTILE_IDS:
        key = ("cardmon_terminal_transactions_total", (("terminal_id", terminal_id),))
        assert served[key] == (3 if terminal_id in HOSTILE_IDS[::2] else 2), terminal_id
    last = served[("cardmon_terminal_last_transaction_timestamp_seconds",
                   (("terminal_id", 'ATM"00042'),))]
    assert last == datetime(2024, 3, 1, 10, 9, 0, 123_457, tzinfo=UTC).timestamp()


def test_per_terminal_lines_are_the_reference_lines(registry, metrics):
    """Counter lines of ordinary IDs are byte for byte prometheus_client's (gauges may spell floats differently)."""
    fast = set(_body(registry).splitlines())
    slow = generate_latest(registry).decode().splitlines()
    per_terminal = [line for line in slow if line.startswith(("cardmon_terminal_transactions",
                                                               "cardmon_terminal_failures"))]
    ordinary = [line for line in per_terminal if 'terminal_id="T0' in line]
    assert len(ordinary) > 90
    assert set(ordinary) <= fast


def test_each_family_is_exposed_once(registry, metrics):
    """The combined body has one HELP and one TYPE line per family and no family twice."""
    lines = _body(registry).splitlines()
    helps = [line.split()[2] for line in lines if line.startswith("# HELP ")]
    types = [line.split()[2] for line in lines if line.startswith("# TYPE ")]
    assert len(helps) == len(set(helps)) == len(types) == len(set(types))
    reference = generate_latest(registry).decode().splitlines()
    assert set(helps) == {line.split()[2] for line in reference if line.startswith("# HELP ")}


def test_promtool_finds_nothing_to_report(registry, metrics, promtool):
    """promtool check metrics accepts the combined body without a single lint message."""
    result = subprocess.run([promtool, "check", "metrics"], input=_body(registry).encode(),
                            capture_output=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_frame_collector_plugs_in_a_family_with_one_call(registry, metrics):
    """A frame-backed gauge registers in one call, reads back through get_sample_value and is served fast."""
    state = pl.DataFrame({"terminal_id": ["T0000001", 'ATM"00042', "東京POS01"],
                          "value": [0, 3, 4]})
    registry.register(FrameCollector("cardmon_terminal_health_state", HEALTH_HELP, "gauge",
                                     source=lambda: state))
    assert registry.get_sample_value("cardmon_terminal_health_state",
                                     {"terminal_id": 'ATM"00042'}) == 3
    families = [f for f in registry.collect() if f.name == "cardmon_terminal_health_state"]
    assert len(families) == 1 and isinstance(families[0], FrameFamily)
    served = _samples(_body(registry))
    assert served[("cardmon_terminal_health_state", (("terminal_id", "東京POS01"),))] == 4
    _same(served, _samples(generate_latest(registry).decode()))
    with pytest.raises(DuplicateTimeseries):
        registry.register(FrameCollector("cardmon_terminal_health_state", HEALTH_HELP, "gauge",
                                         source=lambda: state))


def test_values_keep_every_float_exactly(registry):
    """Awkward floats and counts beyond 2**53 read back as the same float64 as the reference path."""
    values = [0.1, 0.30000000000000004, 1e-7, 5e-324, 1e20, 1.7976931348623157e308, -0.0,
              -2.5, 1772438940.051463, 12345678.9, math.inf, -math.inf, math.nan, None]
    gauge = pl.DataFrame({"terminal_id": [f"T{i}" for i in range(len(values))], "value": values},
                         schema={"terminal_id": pl.String, "value": pl.Float64})
    counts = pl.DataFrame({"terminal_id": ["a", "b", "c", None], "outcome": ["x", "y", None, "z"],
                           "n": [0, 2**53 + 1, 10**16, 7]})
    registry.register(FrameCollector("cardmon_test_value", "awkward floats", "gauge",
                                     source=lambda: gauge))
    registry.register(FrameCollector("cardmon_test_count_total", "big counts", "counter",
                                     source=lambda: counts, labels=("terminal_id", "outcome"),
                                     value="n"))
    fast, slow = _samples(_body(registry)), _samples(generate_latest(registry).decode())
    _same(fast, slow)
    assert len([k for k in fast if k[0] == "cardmon_test_value"]) == len(values) - 1  # null: no series
    # a null label is written as "" (Prometheus drops an empty label; this parser keeps it)
    assert fast[("cardmon_test_count_total", (("outcome", "z"), ("terminal_id", "")))] == 7
    assert fast[("cardmon_test_count_total", (("outcome", "y"), ("terminal_id", "b")))] == float(2**53 + 1)
    assert _body(registry).count("# TYPE cardmon_test_count_total counter\n") == 1


def test_repeated_render_without_new_data_reuses_the_text(registry, metrics):
    """Two scrapes with no batch in between reuse the rendered per-terminal text object."""
    exposition = Exposition(registry)
    first, second = exposition.render(), exposition.render()
    assert len(first) == 4  # three per-terminal families, then generate_latest of the rest
    assert all(a is b for a, b in zip(first[:3], second[:3]))
    metrics.observe_batch(_batch([]))  # an empty batch is no new data
    assert exposition.render()[0] is first[0]


def test_new_batch_invalidates_text_and_gzip(registry, metrics):
    """After a new batch the text and the gzip body both show the new counts."""
    exposition = Exposition(registry)
    key = ("cardmon_terminal_transactions_total", (("terminal_id", "T0000001"),))
    assert _samples(b"".join(exposition.render()).decode())[key] == 1
    assert _samples(zlib.decompress(exposition.render_gzip(), 31).decode())[key] == 1
    metrics.observe_batch(_batch(["T0000001"] * 4, minute=20))
    assert _samples(b"".join(exposition.render()).decode())[key] == 5
    assert _samples(zlib.decompress(exposition.render_gzip(), 31).decode())[key] == 5


def test_http_scrape_with_and_without_gzip_returns_the_same_samples(registry, metrics):
    """A scrape asking for gzip gets one valid gzip member holding the same samples as a plain one."""
    with serve(registry, "127.0.0.1", 0) as server, httpx.Client(timeout=10) as http:
        plain = http.get(server.url, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert int(plain.headers["content-length"]) == len(plain.content)
        with http.stream("GET", server.url, headers={"Accept-Encoding": "gzip"}) as compressed:
            assert compressed.headers["content-encoding"] == "gzip"
            raw = b"".join(compressed.iter_raw())
    assert len(raw) < len(plain.content) // 3
    decompressor = zlib.decompressobj(31)
    text = decompressor.decompress(raw) + decompressor.flush()
    assert decompressor.eof and decompressor.unused_data == b""  # one member, nothing after
    assert _samples(text.decode()) == _samples(plain.text)
    _same(_samples(plain.text), _samples(generate_latest(registry).decode()))


def test_http_name_filter_and_other_methods_use_prometheus_client(registry, metrics):
    """name[] filters, OPTIONS and POST are answered as prometheus_client's own app answers them."""
    with serve(registry, "127.0.0.1", 0) as server, httpx.Client(timeout=10) as http:
        only = http.get(server.url, params={"name[]": "cardmon_terminal_transactions_total"})
        assert {name for name, _ in _samples(only.text)} == {"cardmon_terminal_transactions_total"}
        assert len(_samples(only.text)) == 50 + len(HOSTILE_IDS)
        assert http.options(server.url).headers["allow"] == "OPTIONS,GET"
        assert http.post(server.url).status_code == 405


def test_frame_family_rejects_bad_shapes():
    """Invalid names, repeated labels, missing columns and added samples are refused."""
    frame = pl.DataFrame({"terminal_id": ["a"], "value": [1]})
    with pytest.raises(ValueError, match="valid name"):
        FrameFamily("cardmon-bad", "x", "gauge", frame, labels=["terminal_id"])
    with pytest.raises(ValueError, match="valid name"):
        FrameFamily("cardmon_x", "x", "histogram", frame, labels=["terminal_id"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label names"):
        FrameFamily("cardmon_x", "x", "gauge", frame, labels=["terminal_id", "terminal_id"])
    with pytest.raises(ValueError, match="label names"):
        FrameFamily("cardmon_x", "x", "gauge", frame, labels=["terminal-id"])
    with pytest.raises(ValueError, match=r"\['outcome'\]"):
        FrameFamily("cardmon_x", "x", "gauge", frame, labels=["terminal_id", "outcome"])
    family = FrameFamily("cardmon_x_total", "x", "counter", frame, labels=["terminal_id"])
    assert family.name == "cardmon_x" and family.series == 1
    with pytest.raises(TypeError):
        family.add_sample("cardmon_x_total", {}, 1.0)


def test_empty_families_still_have_help_and_type(registry):
    """Before any batch the per-terminal families are announced with no series, and promtool-valid text."""
    PipelineMetrics(registry)
    Counter("cardmon_other_total", "another counter", registry=registry)
    body = _body(registry)
    assert "# TYPE cardmon_terminal_failures_total counter\n" in body
    assert not [k for k in _samples(body) if k[0].startswith("cardmon_terminal_")]
    _same(_samples(body), _samples(generate_latest(registry).decode()))


def test_concurrent_scrapes_during_batches_see_whole_batches(registry):
    """Scrapes racing with batches each see a whole number of batches, never a half-applied one."""
    metrics = PipelineMetrics(registry)
    ids = [f"T{i:07d}" for i in range(500)]
    totals: list[float] = []
    errors: list[BaseException] = []
    with serve(registry, "127.0.0.1", 0) as server:
        def scrape() -> None:
            try:
                with httpx.Client(timeout=10) as http:
                    for _ in range(8):
                        text = http.get(server.url, headers={"Accept-Encoding": "gzip"}).text
                        totals.append(sum(v for (name, _), v in _samples(text).items()
                                          if name == "cardmon_terminal_transactions_total"))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                errors.append(exc)
        threads = [threading.Thread(target=scrape) for _ in range(3)]
        for thread in threads:
            thread.start()
        for minute in range(20):
            metrics.observe_batch(_batch(ids, minute=minute % 60))
        for thread in threads:
            thread.join()
    assert not errors
    assert len(totals) == 24
    assert all(total % len(ids) == 0 for total in totals), totals
