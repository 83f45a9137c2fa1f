"""gzip family by family: each family compressed once, one valid gzip member per scrape."""

from __future__ import annotations

import gzip
import zlib

import httpx
import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from monitor.metrics import Exposition, FrameCollector, FrameFamily, serve
from monitor.metrics._exposition import crc32_combine, gzip_member


@given(st.binary(max_size=2_000), st.binary(max_size=70_000))
def test_crc32_combine_matches_the_crc_of_the_concatenation(first: bytes, second: bytes) -> None:
    """The combined CRC-32 of two parts is zlib's CRC-32 of both, whatever their lengths."""
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second)) == zlib.crc32(first + second)


@given(st.lists(st.binary(max_size=20_000), max_size=5), st.binary(max_size=2_000))
def test_segments_make_one_gzip_member_of_all_texts(texts: list[bytes], tail: bytes) -> None:
    """Independently compressed segments plus a tail decompress, as one member, to the texts in order."""
    frames = [pl.DataFrame({"terminal_id": [text.hex()[:40] or "x"], "value": [float(n)]})
              for n, text in enumerate(texts)]
    families = [FrameFamily(f"cardmon_part_{n}", "Part.", "gauge", frame, labels=["terminal_id"])
                for n, frame in enumerate(frames)]
    body = gzip_member([family.segment() for family in families], tail)
    expected = b"".join(family.text() for family in families) + tail
    assert zlib.decompress(body, 31) == expected  # one member: what a single-member reader sees
    assert gzip.decompress(body) == expected


def _states(ids: list[str], value: float) -> pl.DataFrame:
    return pl.DataFrame({"terminal_id": ids, "value": [value] * len(ids)})


def test_a_scrape_compresses_only_the_families_whose_frame_changed() -> None:
    """After one frame changes, the other family's compressed segment is reused, and the body is right."""
    registry = CollectorRegistry()
    frames = {"a": _states(["T1", "T2"], 1.0), "b": _states(["T3"], 2.0)}
    collectors = {name: FrameCollector(f"cardmon_test_{name}", f"Test {name}.", "gauge",
                                       source=lambda name=name: frames[name]) for name in frames}
    for collector in collectors.values():
        registry.register(collector)
    Counter("cardmon_other", "Other.", registry=registry).inc()
    exposition = Exposition(registry)
    first = zlib.decompress(exposition.render_gzip(), 31)
    family_b = next(collectors["b"].collect())
    segment_b = family_b.segment()
    frames["a"] = _states(["T1", "T2"], 3.0)
    second = zlib.decompress(exposition.render_gzip(), 31)
    assert next(collectors["b"].collect()) is family_b and family_b.segment() is segment_b
    assert b'cardmon_test_a{terminal_id="T1"} 1.0' in first
    assert b'cardmon_test_a{terminal_id="T1"} 3.0' in second
    assert second == b"".join(exposition.render())


def test_prepare_renders_and_compresses_before_the_scrape() -> None:
    """FrameCollector.prepare leaves the current frame's family compressed, and the scrape serves it."""
    registry = CollectorRegistry()
    frame = _states(["T1"], 4.0)
    collector = FrameCollector("cardmon_test_state", "Test.", "gauge", source=lambda: frame)
    registry.register(collector)
    collector.prepare()
    family = next(collector.collect())
    assert family.compressed
    with serve(registry, "127.0.0.1", 0) as server:
        response = httpx.get(server.url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert response.headers["content-encoding"] == "gzip"
    assert 'cardmon_test_state{terminal_id="T1"} 4.0' in response.text
