"""Replay of recorded canonical-schema traffic: each format round-trips through the real broker, loops and jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from monitor.cli import app as cardmon
from monitor.pipeline.decoder import decode_batch
from simulators.fleet import build_fleet
from simulators.sources.replay import (
    RecordingFormatError,
    read_recording,
    replay,
    replay_events,
    write_recording,
)
from simulators.sources.synthetic import default_faults, synthetic_events

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _recording(count: int = 150) -> list[dict]:
    fleet = build_fleet(terminals=10, customers=50, vips=5, seed=3)
    events = synthetic_events(fleet, start=START, rate=5.0, duration_s=None,
                              faults=default_faults(fleet, 30.0), seed=3)
    return [next(events) for _ in range(count)]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_recording_round_trips_through_a_file(tmp_path: Path, suffix: str) -> None:
    """Writing and reading a recording keeps every field and value (response code "00" stays text, amounts stay integers)."""
    original = _recording()
    path = tmp_path / f"traffic{suffix}"
    assert write_recording(original, path) == len(original)
    back = list(replay_events(read_recording(path)))
    assert len(back) == len(original)
    for mine, theirs in zip(back, original, strict=True):
        assert _time(mine.pop("occurred_at")) == _time(theirs["occurred_at"])
        assert mine == {k: v for k, v in theirs.items() if k != "occurred_at"}


def test_loops_shift_by_the_period_and_suffix_event_ids() -> None:
    """Loop n is shifted n periods later (span plus mean gap), keeps the gaps, and its IDs end with -L{n}."""
    original = read_recording_from(_recording(20))
    looped = list(replay_events(original, loops=3))
    assert len(looped) == 60
    times = [_time(e["occurred_at"]) for e in looped]
    assert times == sorted(times) and len(set(times)) == 60
    span = original[-1]["occurred_at"] - original[0]["occurred_at"]
    period = span + span / 19
    assert times[20] - times[0] == period and times[40] - times[0] == 2 * period
    assert [e["event_id"] for e in looped[20:40]] == [f"{e['event_id']}-L1" for e in original]
    assert len({e["event_id"] for e in looped}) == 60
    assert [t - times[0] for t in times[:20]] == [t - times[40] for t in times[40:]]


def read_recording_from(events: list[dict]) -> list[dict]:
    return [{**e, "occurred_at": _time(e["occurred_at"])} for e in events]


def test_jitter_is_deterministic_given_the_seed() -> None:
    """The same seed gives the same jittered times, within the bound; another seed gives others."""
    original = read_recording_from(_recording(30))
    first = list(replay_events(original, jitter_s=2.0, seed=5))
    assert first == list(replay_events(original, jitter_s=2.0, seed=5))
    assert first != list(replay_events(original, jitter_s=2.0, seed=6))
    for moved, source in zip(first, original, strict=True):
        assert abs(_time(moved["occurred_at"]) - source["occurred_at"]) <= timedelta(seconds=2)


def test_forever_keeps_going() -> None:
    """With loops=None the replay never ends: the 5th loop of a 2-event recording still comes."""
    stream = replay_events(read_recording_from(_recording(2)), loops=None)
    ids = [next(stream)["event_id"] for _ in range(10)]
    assert ids[-1].endswith("-L4")


def test_bad_recordings_are_refused(tmp_path: Path) -> None:
    """A naive timestamp, a missing column or an unknown suffix is a RecordingFormatError naming the file."""
    naive = tmp_path / "naive.jsonl"
    naive.write_text('{"event_id": "e1", "terminal_id": "T1", "occurred_at": "2026-03-02T09:00:00"}\n')
    with pytest.raises(RecordingFormatError, match="no UTC offset"):
        read_recording(naive)
    missing = tmp_path / "missing.csv"
    missing.write_text("event_id,occurred_at\ne1,2026-03-02T09:00:00+00:00\n")
    with pytest.raises(RecordingFormatError, match="terminal_id"):
        read_recording(missing)
    with pytest.raises(RecordingFormatError, match="--format"):
        read_recording(tmp_path / "traffic.txt")


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
async def test_replay_into_kafka_and_back(kafka_bootstrap: str, unique_name: str, tmp_path: Path,
                                          topic_reader, suffix: str) -> None:
    """Two loops of a recording reach the topic in order, keyed by terminal ID, valid for the monitor's decoder."""
    original = _recording(120)
    path = tmp_path / f"traffic{suffix}"
    write_recording(original, path)
    topic = f"replay.{unique_name}"
    sent = await replay(path, bootstrap_servers=kafka_bootstrap, topic=topic, loops=2)
    assert sent == 240
    records = await topic_reader(kafka_bootstrap, topic, 240)
    assert len(records) == 240
    decoded = decode_batch([r.value for r in records])
    assert decoded.rejections == []
    by_id = {e.event_id: e for e in decoded.events}
    assert len(by_id) == 240
    span = _time(original[-1]["occurred_at"]) - _time(original[0]["occurred_at"])
    period = span + span / 119
    for source in original:
        again = by_id[source["event_id"]]
        assert again.occurred_at == _time(source["occurred_at"])
        assert again.response_code == source.get("response_code")
        assert again.amount_minor == source["amount_minor"]
        assert by_id[source["event_id"] + "-L1"].occurred_at == again.occurred_at + period
    assert all(r.key == msgspec.json.decode(r.value)["terminal_id"].encode() for r in records)


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_cli_replays_rebased_to_now(kafka_bootstrap: str, unique_name: str, tmp_path: Path,
                                    topic_reader) -> None:
    """`cardmon simulate replay --rebase-to-now` sends the recording with its first event stamped now, gaps kept."""
    import asyncio

    original = _recording(30)
    path = tmp_path / "traffic.jsonl"
    write_recording(original, path)
    topic = f"replay.{unique_name}"
    before = datetime.now(UTC)
    result = CliRunner().invoke(cardmon, [
        "simulate", "replay", str(path), "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
        "--rebase-to-now", "--no-progress"])
    assert result.exit_code == 0, result.output
    records = asyncio.run(topic_reader(kafka_bootstrap, topic, 30))
    times = [_time(msgspec.json.decode(r.value)["occurred_at"]) for r in records]
    assert len(times) == 30
    assert before - timedelta(seconds=1) <= min(times) <= datetime.now(UTC)
    shift = min(times) - _time(original[0]["occurred_at"])
    assert sorted(times) == sorted(_time(e["occurred_at"]) + shift for e in original)
