"""Mapping of the real TabFormer User0 sample onto contract v1."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import polars as pl
import pytest

from monitor.pipeline.decoder import decode_batch
from simulators.sources.tabformer import TabFormerFormatError, read_tabformer, tabformer_events

SAMPLE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tabformer"
          / "User0_credit_card_transactions.csv")


@pytest.fixture(scope="module")
def sample() -> Path:
    """The real sample's path (module-scoped twin of ``tabformer_csv``); skips where absent."""
    if not SAMPLE.is_file():
        pytest.skip(f"TabFormer sample not found at {SAMPLE} (see ../shared/data/SOURCES.md)")
    return SAMPLE


@pytest.fixture(scope="module")
def frame(sample: Path) -> pl.DataFrame:
    """The sample read in UTC (module-scoped: read once)."""
    return read_tabformer(sample)


@pytest.fixture(scope="module")
def source_rows(sample: Path) -> list[dict[str, str]]:
    """The sample as plain text rows read by the csv module."""
    with sample.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_row_becomes_an_event(frame: pl.DataFrame) -> None:
    """All 19,963 rows are mapped, each with a unique event ID."""
    assert frame.height == 19_963
    assert frame["event_id"].n_unique() == 19_963
    assert frame["event_id"][0] == "tf-U0-C0-000001"


def test_response_codes_follow_the_decline_reasons(frame: pl.DataFrame) -> None:
    """Decline reasons map to ISO 8583 codes; two-reason rows take the more severe class."""
    counts = dict(frame["response_code"].value_counts().iter_rows())
    assert counts == {
        "00": 19_389, "51": 469, "96": 46 + 1, "55": 42 + 1, "54": 9, "14": 4, "N7": 2,
    }
    assert frame.filter(pl.col("response_code") != "00").height == 574


def test_two_reasons_are_both_kept(frame: pl.DataFrame) -> None:
    """A field with two reasons keeps both words in decline_reasons and picks the worse code."""
    doubles = frame.filter(pl.col("decline_reasons").list.len() == 2)
    got = sorted(zip(doubles["response_code"], doubles["decline_reasons"].to_list()))
    assert got == [
        ("55", ["Bad PIN", "Insufficient Balance"]),
        ("96", ["Bad PIN", "Technical Glitch"]),
    ]
    singles = frame.filter(pl.col("response_code") == "51")
    assert singles["decline_reasons"].to_list() == [["Insufficient Balance"]] * 469
    assert frame.filter(pl.col("response_code") == "00")["decline_reasons"].null_count() == 19_389


def test_refunds_are_positive_amounts(frame: pl.DataFrame, source_rows: list[dict[str, str]]) -> None:
    """Negative amounts become 650 refunds with a positive amount in cents."""
    refunds = frame.filter(pl.col("txn_type") == "refund")
    assert refunds.height == 650
    assert refunds["amount_minor"].min() > 0
    assert set(frame["txn_type"].unique()) == {"purchase", "refund"}
    assert (frame["currency"] == "USD").all()
    # Cents equal the text's digits: compare every row with a decimal-free parse of the CSV.
    expected = [int(row["Amount"].replace("$", "").replace("-", "").replace(".", ""))
                for row in source_rows]
    assert frame["amount_minor"].to_list() == expected
    assert frame["amount_minor"][0] == 13_409


def test_merchant_ids_are_the_csv_text(frame: pl.DataFrame, source_rows: list[dict[str, str]]) -> None:
    """Merchant IDs equal the 19-digit Merchant Name text exactly, never via a float."""
    assert frame["merchant_id"].to_list() == [row["Merchant Name"] for row in source_rows]
    assert "-727612092139916043" in set(frame["merchant_id"])


def test_channels_and_locations(frame: pl.DataFrame, source_rows: list[dict[str, str]]) -> None:
    """Use Chip gives channel and entry mode; ECOM has no city; terminal IDs are 8 characters."""
    pairs = Counter(zip(frame["channel"], frame["entry_mode"]))
    assert pairs == {("POS", "swipe"): 15_840, ("POS", "chip"): 2_808, ("ECOM", "online"): 1_315}
    ecom = frame.filter(pl.col("channel") == "ECOM")
    assert ecom["city"].null_count() == ecom.height
    assert ecom["terminal_id"].str.starts_with("E").all()
    pos = frame.filter(pl.col("channel") == "POS")
    assert pos["terminal_id"].str.starts_with("P").all()
    assert pos["city"].null_count() == 0
    assert (frame["terminal_id"].str.len_chars() == 8).all()
    assert frame["region"].to_list() == [row["Merchant State"] or None for row in source_rows]
    # Terminal IDs follow the documented formula: merchant and place for POS, merchant for ECOM.
    expected = []
    for row in source_rows:
        if row["Use Chip"] == "Online Transaction":
            key, prefix = row["Merchant Name"], "E"
        else:
            zip_code = row["Zip"].removesuffix(".0")
            key, prefix = f"{row['Merchant Name']}|{row['Merchant City']}|{zip_code}", "P"
        expected.append(prefix + hashlib.sha256(key.encode()).hexdigest()[:7].upper())
    assert frame["terminal_id"].to_list() == expected


def test_customer_and_card(frame: pl.DataFrame) -> None:
    """Customer and card references are built from User and Card."""
    assert set(frame["customer_id"]) == {"U0"}
    assert set(frame["card_ref"]) == {f"U0-C{card}" for card in range(5)}


def test_times_are_in_the_replay_zone(tabformer_csv: Path) -> None:
    """Wall-clock times are read in the given IANA zone and are timezone-aware."""
    utc = read_tabformer(tabformer_csv)
    paris = read_tabformer(tabformer_csv, timezone="Europe/Paris")
    first_utc = utc["occurred_at"][0]
    first_paris = paris["occurred_at"][0]
    assert first_utc == datetime(2002, 9, 1, 6, 21, tzinfo=UTC)
    assert first_paris == datetime(2002, 9, 1, 6, 21, tzinfo=ZoneInfo("Europe/Paris"))
    assert first_utc - first_paris.astimezone(UTC) == (
        datetime(2002, 9, 1, 6, 21) - datetime(2002, 9, 1, 4, 21)
    )
    assert paris["occurred_at"].null_count() == 0


def test_events_decode_without_rejection(tabformer_csv: Path) -> None:
    """Every event dict, JSON-encoded, passes the contract decoder."""
    events = list(tabformer_events(tabformer_csv, timezone="America/Los_Angeles"))
    assert len(events) == 19_963
    assert events[0]["occurred_at"] == "2002-09-01T06:21:00-07:00"
    batch = decode_batch([msgspec.json.encode(event) for event in events])
    assert batch.rejections == []
    assert len(batch.events) == 19_963
    assert batch.events[0].merchant_id == "3527213246127876953"
    assert all(value is not None for value in events[0].values())


def test_limit_stops_early(tabformer_csv: Path) -> None:
    """A limit yields only the first rows of the file."""
    events = list(tabformer_events(tabformer_csv, limit=5))
    assert [event["event_id"][-6:] for event in events] == [f"{i:06d}" for i in range(1, 6)]


def test_bad_amount_is_refused(tmp_path: Path) -> None:
    """An amount that is not like $134.09 raises a format error naming the value."""
    path = tmp_path / "bad.csv"
    path.write_text(
        "User,Card,Year,Month,Day,Time,Amount,Use Chip,Merchant Name,Merchant City,"
        "Merchant State,Zip,MCC,Errors?,Is Fraud?\n"
        "0,0,2002,9,1,06:21,134.09 USD,Swipe Transaction,1,X,CA,91750.0,5300,,No\n"
    )
    with pytest.raises(TabFormerFormatError, match="134.09 USD"):
        read_tabformer(path)


def test_dst_gap_and_fold(tmp_path: Path) -> None:
    """A wall time in the spring DST gap moves an hour later; one in the autumn fold takes the first."""
    header = ("User,Card,Year,Month,Day,Time,Amount,Use Chip,Merchant Name,Merchant City,"
              "Merchant State,Zip,MCC,Errors?,Is Fraud?\n")
    rows = [
        "0,0,2019,3,10,02:30,$1.00,Chip Transaction,1,X,CA,91750.0,5300,Bad Zipcode,No\n",
        "0,0,2019,11,3,01:30,$1.00,Chip Transaction,1,X,CA,91750.0,5300,Mystery,No\n",
    ]
    path = tmp_path / "dst.csv"
    path.write_text(header + "".join(rows))
    frame = read_tabformer(path, timezone="America/Los_Angeles")
    gap, fold = frame["occurred_at"].to_list()
    assert gap.astimezone(UTC) == datetime(2019, 3, 10, 10, 30, tzinfo=UTC)
    assert fold.astimezone(UTC) == datetime(2019, 11, 3, 8, 30, tzinfo=UTC)
    assert frame["response_code"].to_list() == ["N7", "N7"]
    assert frame["decline_reasons"].to_list() == [["Bad Zipcode"], ["Mystery"]]

