"""Replay source for IBM TabFormer card-transaction CSV files.

TabFormer (IBM, Apache-2.0) is a synthetic credit-card data set, one row per
authorization. This module maps a TabFormer CSV onto contract v1
(:class:`monitor.domain.TransactionEvent`), whole file at once in polars. Every
column is read as a string, so ``Merchant Name`` (a signed 19-digit integer)
never goes through a float and ``Amount`` is parsed as text.

The mapping, column by column:

``event_id``
    ``tf-U{User}-C{Card}-{row:06d}``, ``row`` being the 1-based data row of the
    file: deterministic and unique per row (some (card, minute) pairs repeat).
``customer_id`` / ``card_ref``
    ``U{User}`` / ``U{User}-C{Card}``. TabFormer has no PAN, so no ``pan_masked``.
``merchant_id``
    ``Merchant Name`` exactly as written (e.g. ``-727612092139916043``).
``amount_minor``, ``currency``, ``txn_type``
    ``$134.09`` is 13409 (cents, parsed as digits, never as a float) in ``USD``.
    A negative amount (``$-99.00``) is a refund: ``txn_type = "refund"`` and
    ``amount_minor`` is the absolute value; otherwise ``"purchase"``.
``channel``, ``entry_mode`` (from ``Use Chip``)
    ``Swipe Transaction`` is POS/swipe, ``Chip Transaction`` is POS/chip,
    ``Online Transaction`` is ECOM/online.
``response_code`` (ISO 8583 field 39), ``decline_reasons`` (from ``Errors?``)
    empty is ``00``; ``Insufficient Balance`` 51, ``Bad PIN`` 55 (customer class);
    ``Bad Expiration`` 54, ``Bad Card Number`` 14, ``Bad CVV`` N7 (card class);
    ``Technical Glitch`` 96 (technical class). ``Bad Zipcode`` (present in the
    full data set) and any reason not listed here become ``N7``: like a CVV2
    mismatch it is card verification data that did not match, and N7 is the
    closest card-class code (Visa "decline for CVV2 failure"); the source words
    are kept in ``decline_reasons`` so nothing is lost. When one field holds
    several reasons (``"Bad PIN,Technical Glitch"``) the most severe class wins,
    technical > terminal > fraud > card > customer, and between reasons of the
    same class the first listed wins (``"Bad PIN,Insufficient Balance"`` is 55).
    ``decline_reasons`` lists every reason in source order, also a single one.
``occurred_at``
    ``Year``/``Month``/``Day``/``Time`` (``HH:MM``, no zone) read as wall time in
    the replay time zone (IANA name, default ``UTC``). An ambiguous wall time
    (autumn DST fold) takes the earlier instant; a wall time that does not exist
    (spring DST gap) is moved one hour later.
``terminal_id`` (ISO 8583 field 41, 8 characters)
    TabFormer has no terminal, so one is derived from the merchant and its
    location: POS ``P`` + the first 7 uppercase hex digits of
    ``sha256("{merchant_id}|{city}|{zip}")`` (``Zip`` without its ``.0``, empty
    when absent); ECOM ``E`` + 7 hex digits of ``sha256(merchant_id)``.
``city``, ``region``
    ``Merchant City`` and ``Merchant State`` (foreign merchants carry their
    country in ``Merchant State``). Online rows say ``ONLINE`` as the city; ECOM
    events carry no city.

``MCC`` and ``Is Fraud?`` have no contract field and are dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import polars as pl

from monitor.errors import ConfigurationError

__all__ = [
    "DEFAULT_REASON_CODE",
    "REASON_CODES",
    "TABFORMER_COLUMNS",
    "TabFormerFormatError",
    "frame_events",
    "read_tabformer",
    "tabformer_events",
]

TABFORMER_COLUMNS: Final[tuple[str, ...]] = (
    "User", "Card", "Year", "Month", "Day", "Time", "Amount", "Use Chip",
    "Merchant Name", "Merchant City", "Merchant State", "Zip", "MCC", "Errors?", "Is Fraud?",
)

#: TabFormer decline reason -> (ISO 8583 response code, outcome class).
REASON_CODES: Final[dict[str, tuple[str, str]]] = {
    "Technical Glitch": ("96", "technical"),
    "Bad Card Number": ("14", "card"),
    "Bad Expiration": ("54", "card"),
    "Bad CVV": ("N7", "card"),
    "Bad Zipcode": ("N7", "card"),
    "Insufficient Balance": ("51", "customer"),
    "Bad PIN": ("55", "customer"),
}
#: Response code for a reason missing from :data:`REASON_CODES` (card class, see module doc).
DEFAULT_REASON_CODE: Final = "N7"
_DEFAULT_REASON_CLASS: Final = "card"

# Severity rank of outcome classes for several reasons in one field: higher wins.
_CLASS_RANK: Final[dict[str, int]] = {
    "technical": 5, "terminal": 4, "fraud": 3, "card": 2, "customer": 1,
}
_USE_CHIP: Final[dict[str, tuple[str, str]]] = {
    "Swipe Transaction": ("POS", "swipe"),
    "Chip Transaction": ("POS", "chip"),
    "Online Transaction": ("ECOM", "online"),
}
# `$-99.00`: sign, whole units, exactly two decimals (USD has ISO 4217 exponent 2).
_AMOUNT_PATTERN: Final = r"^\$(-?)([0-9]+)\.([0-9]{2})$"
_ROWS_PER_CHUNK: Final = 10_000  # rows turned into dicts at a time by tabformer_events
#: Contract field order of the frame read_tabformer returns.
_OUTPUT_COLUMNS: Final[tuple[str, ...]] = (
    "event_id", "occurred_at", "channel", "terminal_id", "txn_type", "amount_minor",
    "currency", "card_ref", "status", "response_code", "merchant_id", "customer_id",
    "entry_mode", "city", "region", "decline_reasons",
)


class TabFormerFormatError(ConfigurationError):
    """The file is not a TabFormer card-transaction CSV this module can map."""


def _terminal_id(channel: str, merchant_id: str, city: str | None, zip_code: str | None) -> str:
    if channel == "ECOM":
        return "E" + hashlib.sha256(merchant_id.encode()).hexdigest()[:7].upper()
    key = f"{merchant_id}|{city or ''}|{zip_code or ''}"
    return "P" + hashlib.sha256(key.encode()).hexdigest()[:7].upper()


def _with_terminal_ids(frame: pl.DataFrame) -> pl.DataFrame:
    # Hash each distinct (channel, merchant, city, zip) once, then join back:
    # a few hundred hashes instead of one per row.
    keys = ["channel", "merchant_id", "_city_raw", "_zip"]
    terminals = frame.select(keys).unique()
    ids = [
        _terminal_id(*row) for row in terminals.iter_rows()
    ]
    terminals = terminals.with_columns(pl.Series("terminal_id", ids, dtype=pl.String))
    return frame.join(terminals, on=keys, how="left", nulls_equal=True)


def _occurred_at(timezone: str) -> pl.Expr:
    hour_minute = pl.col("Time").str.split_exact(":", 1)
    naive = pl.datetime(
        pl.col("Year").cast(pl.Int32), pl.col("Month").cast(pl.Int8), pl.col("Day").cast(pl.Int8),
        hour_minute.struct.field("field_0").cast(pl.Int8),
        hour_minute.struct.field("field_1").cast(pl.Int8),
        time_unit="us",
    )
    local = naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    shifted = (naive + pl.duration(hours=1)).dt.replace_time_zone(
        timezone, ambiguous="earliest", non_existent="null"
    )
    return pl.coalesce(local, shifted).alias("occurred_at")


def _response_code() -> list[pl.Expr]:
    reasons = (
        pl.col("Errors?").str.split(",").list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    code_of = {reason: code for reason, (code, _) in REASON_CODES.items()}
    rank_of = {reason: _CLASS_RANK[cls] for reason, (_, cls) in REASON_CODES.items()}
    codes = reasons.list.eval(
        pl.element().replace_strict(code_of, default=DEFAULT_REASON_CODE, return_dtype=pl.String)
    )
    ranks = reasons.list.eval(
        pl.element().replace_strict(
            rank_of, default=_CLASS_RANK[_DEFAULT_REASON_CLASS], return_dtype=pl.Int8
        )
    )
    # list.arg_max returns the first maximum, so ties keep the first-listed reason.
    worst = codes.list.get(ranks.list.arg_max(), null_on_oob=True)
    has_reason = reasons.list.len().fill_null(0) > 0
    return [
        pl.when(has_reason).then(worst).otherwise(pl.lit("00")).alias("response_code"),
        pl.when(has_reason).then(reasons).otherwise(None).alias("decline_reasons"),
    ]


def read_tabformer(path: str | Path, *, timezone: str = "UTC") -> pl.DataFrame:
    """Read a TabFormer CSV into contract v1 columns.

    Args:
        path: the CSV file (header ``User,Card,Year,...,Errors?,Is Fraud?``).
        timezone: IANA time zone the file's wall-clock times are read in.

    Returns:
        One row per CSV data row, in file order, with the columns ``event_id``,
        ``occurred_at`` (timezone-aware ``Datetime``), ``channel``, ``terminal_id``,
        ``txn_type``, ``amount_minor`` (``Int64``, cents), ``currency``, ``card_ref``,
        ``status``, ``response_code``, ``merchant_id``, ``customer_id``, ``entry_mode``,
        ``city``, ``region`` and ``decline_reasons`` (``List[String]``, null if approved),
        named and typed as the fields of :class:`monitor.domain.TransactionEvent`.

    Raises:
        TabFormerFormatError: a column is missing, or an ``Amount``, ``Use Chip`` or
            date/time value cannot be mapped.
        polars.exceptions.ComputeError: ``timezone`` is not a known IANA zone.
    """
    raw = pl.read_csv(path, infer_schema=False)
    missing = [column for column in TABFORMER_COLUMNS if column not in raw.columns]
    if missing:
        raise TabFormerFormatError(f"{path}: missing TabFormer column(s) {missing}")
    bad_amount = raw.filter(~pl.col("Amount").str.contains(_AMOUNT_PATTERN).fill_null(False))
    if bad_amount.height:
        raise TabFormerFormatError(
            f"{path}: {bad_amount.height} Amount value(s) not like '$134.09', "
            f"first {bad_amount['Amount'][0]!r}"
        )
    bad_chip = raw.filter(~pl.col("Use Chip").is_in(list(_USE_CHIP)).fill_null(False))
    if bad_chip.height:
        raise TabFormerFormatError(
            f"{path}: unknown Use Chip value {bad_chip['Use Chip'][0]!r}"
        )
    amount = pl.col("Amount").str.extract_groups(_AMOUNT_PATTERN)
    channel_of = {value: channel for value, (channel, _) in _USE_CHIP.items()}
    entry_of = {value: entry for value, (_, entry) in _USE_CHIP.items()}
    frame = raw.with_row_index("_row", offset=1).with_columns(
        (pl.lit("U") + pl.col("User")).alias("customer_id"),
        (pl.lit("U") + pl.col("User") + pl.lit("-C") + pl.col("Card")).alias("card_ref"),
        pl.col("Merchant Name").alias("merchant_id"),
        (
            amount.struct.field("2").cast(pl.Int64) * 100
            + amount.struct.field("3").cast(pl.Int64)
        ).alias("amount_minor"),
        pl.when(amount.struct.field("1") == "-").then(pl.lit("refund"))
        .otherwise(pl.lit("purchase")).alias("txn_type"),
        pl.lit("USD").alias("currency"),
        pl.lit("completed").alias("status"),
        pl.col("Use Chip").replace_strict(channel_of).alias("channel"),
        pl.col("Use Chip").replace_strict(entry_of).alias("entry_mode"),
        pl.col("Merchant City").alias("_city_raw"),
        pl.col("Zip").str.replace(r"\.0$", "").alias("_zip"),
        pl.col("Merchant State").alias("region"),
        _occurred_at(timezone),
        *_response_code(),
    )
    if frame["occurred_at"].null_count():
        raise TabFormerFormatError(f"{path}: unreadable Year/Month/Day/Time values")
    frame = _with_terminal_ids(frame).with_columns(
        pl.when(pl.col("channel") == "ECOM").then(None).otherwise(pl.col("_city_raw"))
        .alias("city"),
        (
            pl.lit("tf-") + pl.col("card_ref") + pl.lit("-")
            + pl.col("_row").cast(pl.String).str.zfill(6)
        ).alias("event_id"),
    )
    return frame.sort("_row").select(_OUTPUT_COLUMNS)


def frame_events(frame: pl.DataFrame) -> Iterator[dict[str, Any]]:
    """Yield contract-v1 event dicts for a frame from :func:`read_tabformer`, in row order.

    Args:
        frame: the frame (or a slice or filter of it).

    Returns:
        An iterator of dicts ready for ``msgspec.json.encode``: ``occurred_at`` is an
        RFC 3339 string with its UTC offset (``2002-09-01T06:21:00+00:00``) and fields
        without a value are left out.
    """
    frame = frame.with_columns(pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%:z"))
    for chunk in frame.iter_slices(_ROWS_PER_CHUNK):
        for row in chunk.to_dicts():
            yield {key: value for key, value in row.items() if value is not None}


def tabformer_events(
    path: str | Path, *, timezone: str = "UTC", limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Yield contract-v1 event dicts for a TabFormer CSV, in file order.

    The whole file is read and mapped (:func:`read_tabformer`) before the first
    event is yielded; dicts are then built :data:`_ROWS_PER_CHUNK` rows at a time.

    Args:
        path: the CSV file.
        timezone: IANA time zone the file's wall-clock times are read in.
        limit: stop after this many events (``None``: the whole file).

    Returns:
        An iterator of dicts as :func:`frame_events` yields them.

    Raises:
        TabFormerFormatError: as :func:`read_tabformer`.
    """
    frame = read_tabformer(path, timezone=timezone)
    yield from frame_events(frame if limit is None else frame.head(limit))
