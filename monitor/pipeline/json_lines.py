"""The decoder's Rust path: flat, plain JSON messages read as one NDJSON block by polars.

:func:`read_plain_lines` is the first stage of :func:`monitor.pipeline.decoder.decode_frame`.
It reads the messages that are *plain* -- one flat JSON object whose members are all
fields of :class:`~monitor.domain.TransactionEvent` that the batch frame holds, each
with a JSON value of the field's own type (a string for a text, literal or time field,
an integer or a number), with no escape (``\\``), no control character and no ``null`` --
with one ``pl.read_ndjson`` call over the messages joined by newlines: parsing, UTF-8
checks and column building run in Rust, outside the GIL. Everything else (a raw
``pan``, ``decline_reasons``, an unknown or duplicated key, a nested value, an escape,
a pretty-printed or broken message, a tombstone) is left to the per-message path, which
is exact by construction.

Why the result is the reference decoder's (msgspec, strict types) on the rows it keeps:

* **Types.** polars' NDJSON reader turns a number, a boolean, an object or an array
  into text when the column is a string (msgspec rejects them), so the reader is only
  given lines that :data:`PLAIN_LINE` matches as a whole: every member's key is a known
  field and its value has that field's JSON type (a string, an integer, a number). A
  message that is not plain is never read here.
* **Duplicated keys.** msgspec keeps the last value of a duplicated key, polars the
  first. In a plain line (no escape) each ``"`` opens or closes a string, so a line
  holds exactly ``2 x members + 2 x string members`` quotes, and a line whose members
  are all distinct fields holds exactly ``4 x (string fields set) + 2 x (number fields
  set)``; any duplicate adds some. The quotes are counted per line (in Rust) and a
  line with more is left to the per-message path.
* **Values.** Strings without escapes are their bytes in both decoders. Integers and
  numbers are parsed by both to the nearest double (property-tested against msgspec);
  an integer outside Int64 becomes null here and so fails the required-field check. The
  event time is parsed here only in strict RFC 3339 (``T``, ``Z`` or ``+hh:mm``, at most
  six fraction digits: no rounding); msgspec's other spellings go the per-message way.
* **Constraints.** Each field's msgspec constraints (required, literal values, string
  lengths in characters, integer and number bounds, a timezone on the time) are read
  from the struct with :mod:`msgspec.inspect` and checked per column
  (:func:`shape_flags`); string patterns and the contract's text rules are
  :mod:`monitor.pipeline.column_checks`' work, as for every row of the fast path.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final

import msgspec
import polars as pl
import pyarrow as pa
from pyarrow import json as pa_json

from monitor.domain import TransactionEvent
from monitor.pipeline.batch_frame import EVENT_SCHEMA

__all__ = ["PLAIN_LINE_MAX_BYTES", "READ_SCHEMA", "PlainLines", "read_plain_lines", "shape_flags"]


def _field_types() -> dict[str, msgspec.inspect.Type]:
    """``{field name: msgspec type without None}`` for the fields the batch frame reads."""
    found: dict[str, msgspec.inspect.Type] = {}
    info = msgspec.inspect.type_info(TransactionEvent)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        kind = field.type
        if isinstance(kind, msgspec.inspect.UnionType):
            others = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
            kind = others[0] if len(others) == 1 else kind
        found[field.encode_name] = kind
    return found


_TYPES: Final = _field_types()
_FIELDS: Final = msgspec.inspect.type_info(TransactionEvent).fields  # type: ignore[attr-defined]
#: Fields that may not be null: the required ones, and those with a default but no
#: ``None`` (``status``: absent is its default, but ``null`` is an error and Arrow
#: reads both as null, so such a row goes the per-message way).
_NOT_NULL: Final = tuple(
    f.encode_name for f in _FIELDS
    if f.required or not (isinstance(f.type, msgspec.inspect.UnionType)
                          and any(isinstance(t, msgspec.inspect.NoneType) for t in f.type.types)))
#: Columns read here: the batch frame's and the two only the column checks need.
_READ_FIELDS: Final = (*EVENT_SCHEMA, "mti", "processing_code")
_NUMBER_TYPES: Final = (msgspec.inspect.IntType, msgspec.inspect.FloatType)
_TEXT_TYPES: Final = (msgspec.inspect.StrType, msgspec.inspect.LiteralType, msgspec.inspect.DateTimeType)
for _name in _READ_FIELDS:  # the reader only knows these JSON shapes
    if not isinstance(_TYPES[_name], _NUMBER_TYPES + _TEXT_TYPES):
        raise TypeError(f"{_name}: {_TYPES[_name]} has no plain JSON form")
_TEXT_FIELDS: Final = tuple(name for name in _READ_FIELDS if isinstance(_TYPES[name], _TEXT_TYPES))
_INT_FIELDS: Final = tuple(name for name in _READ_FIELDS if isinstance(_TYPES[name], msgspec.inspect.IntType))
_FLOAT_FIELDS: Final = tuple(name for name in _READ_FIELDS
                             if isinstance(_TYPES[name], msgspec.inspect.FloatType))

#: Column → dtype handed to ``pl.read_ndjson`` (the time as text: parsed strictly below).
READ_SCHEMA: Final[dict[str, pl.DataType]] = {
    name: (pl.String() if name in _TEXT_FIELDS else pl.Int64() if name in _INT_FIELDS else pl.Float64())
    for name in _READ_FIELDS
}

_ARROW_TYPES: Final = {pl.String(): pa.string(), pl.Int64(): pa.int64(), pl.Float64(): pa.float64()}
#: Read too, so that a message with either goes the per-message way (a raw PAN is masked
#: and reported by the reference; decline reasons are cleaned one by one). Any other
#: JSON type for them makes Arrow refuse the block.
_PER_MESSAGE_FIELDS: Final = {"pan": pa.string(), "decline_reasons": pa.list_(pa.string())}
_PARSE_OPTIONS: Final = pa_json.ParseOptions(
    explicit_schema=pa.schema([*((name, _ARROW_TYPES[dtype]) for name, dtype in READ_SCHEMA.items()),
                               *_PER_MESSAGE_FIELDS.items()]),
    newlines_in_values=False, unexpected_field_behavior="ignore")
#: The whole batch in one block, parsed on the calling thread with the GIL released: on
#: two shared cores Arrow's own threads cost more CPU than they save time.
_READ_OPTIONS: Final = pa_json.ReadOptions(use_threads=False, block_size=1 << 26)
#: Longest plain message (bytes). Unknown members may nest objects or arrays, which Arrow
#: reads at any depth but msgspec only to about the interpreter's recursion limit
#: (1,000 frames, less the caller's): a level costs at least 4 bytes, so a message this
#: short nests at most ~512 levels, which msgspec reads as well. Events are ~500 bytes.
PLAIN_LINE_MAX_BYTES: Final = 2048

# The event time in strict RFC 3339: date, T, time with at most six fraction digits
# (so no rounding), then Z or an offset of at most 23:59 (msgspec's own bounds).
_TIME: Final = ("^[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                "(?:\\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.f%:z"


@dataclass(slots=True)
class PlainLines:
    """What :func:`read_plain_lines` read.

    Attributes:
        frame: one row per message read, columns of :data:`READ_SCHEMA` then ``pan`` and
            ``decline_reasons``, in batch order; ``None`` when none was read.
        indices: for each row of ``frame``, its position in the batch.
        refused: positions of the messages not read (not plain, or refused by Arrow), in
            order: the reference decoder decides them.
    """

    frame: pl.DataFrame | None
    indices: list[int]
    refused: list[int]


def _plain(value: bytes | None) -> bool:
    """``value`` may be given to Arrow: one object on one line, short enough, no tombstone."""
    return (value is not None and 0 < len(value) <= PLAIN_LINE_MAX_BYTES and value.startswith(b"{")
            and value.endswith(b"}") and b"\n" not in value)


def _all_plain(values: list[bytes | None]) -> bool:
    """Whether every value is plain (:func:`_plain`), with C-level passes over the batch."""
    if None in values:
        return False
    texts: list[bytes] = values  # type: ignore[assignment]  # no None
    lengths = list(map(len, texts))
    return (min(lengths, default=1) > 0 and max(lengths, default=0) <= PLAIN_LINE_MAX_BYTES
            and all(map(bytes.startswith, texts, repeat(b"{")))
            and all(map(bytes.endswith, texts, repeat(b"}")))
            and not any(map(operator.contains, texts, repeat(b"\n"))))


def read_plain_lines(values: list[bytes | None]) -> PlainLines:
    """Read the batch's messages with Arrow's JSON reader (outside the GIL).

    Only a *plain* message is given to Arrow: one line that starts with ``{`` and ends
    with ``}`` (Arrow's reader crashes on a first line of ``null``), at most
    :data:`PLAIN_LINE_MAX_BYTES` long, valid UTF-8 (Arrow does not check it). The
    plain messages are read as one block; if Arrow refuses it (a duplicated key, a
    value of the wrong JSON type, a raw control character, a number out of range, two
    objects on a line...) the block is halved until each refused message is alone, so
    one bad message costs a few more reads, not the batch.

    Args:
        values: raw message values in batch order.

    Returns:
        A :class:`PlainLines`. Never raises on bad input.
    """
    if _all_plain(values):
        indices = list(range(len(values)))
        refused: list[int] = []
    else:
        indices = [index for index, value in enumerate(values) if _plain(value)]
        refused = [index for index, value in enumerate(values) if not _plain(value)]
    if not indices:
        return PlainLines(None, [], refused)
    block = b"\n".join([values[i] for i in indices])  # type: ignore[misc]
    try:  # Arrow does not check UTF-8 (msgspec does): one pass here, per message if it fails
        block.decode("utf-8")
    except UnicodeDecodeError:
        bad = {index for index in indices if not _is_utf8(values[index])}  # type: ignore[arg-type]
        refused = sorted([*refused, *bad])
        indices = [index for index in indices if index not in bad]
        if not indices:
            return PlainLines(None, [], refused)
        block = b"\n".join([values[i] for i in indices])  # type: ignore[misc]
    tables, read, not_read = _read_block(values, indices, block)
    if not_read:
        refused = sorted([*refused, *not_read])
    if not tables:
        return PlainLines(None, [], refused)
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return PlainLines(frame, read, refused)


def _read_block(values: list[bytes | None], indices: list[int],
                block: bytes | None = None) -> tuple[list[pa.Table], list[int], list[int]]:
    """Arrow's tables of the messages at ``indices``, the positions read, the positions refused."""
    if block is None:
        block = b"\n".join([values[i] for i in indices])  # type: ignore[misc]
    try:
        table = pa_json.read_json(pa.py_buffer(block), read_options=_READ_OPTIONS,
                                  parse_options=_PARSE_OPTIONS)
    except pa.ArrowException:
        table = None
    if table is not None and table.num_rows == len(indices):  # else: two objects on a line
        return [table], indices, []
    if len(indices) == 1:
        return [], [], indices
    middle = len(indices) // 2
    left = _read_block(values, indices[:middle])
    right = _read_block(values, indices[middle:])
    return left[0] + right[0], left[1] + right[1], left[2] + right[2]


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bounds(expr: pl.Expr, kind: Any) -> pl.Expr | None:
    """True where ``expr`` might break ``kind``'s msgspec constraints (False on null); ``None``: none.

    Conservative: a text of more bytes than its maximum length in characters is flagged
    (msgspec, which counts characters, decides it), so no character count is needed.
    """
    bad: list[pl.Expr] = []
    if isinstance(kind, msgspec.inspect.StrType):
        bytes_ = expr.str.len_bytes()
        if kind.min_length:
            bad.append(bytes_ < kind.min_length)
        if kind.max_length is not None:
            bad.append(bytes_ > kind.max_length)
    elif isinstance(kind, msgspec.inspect.LiteralType):
        bad.append(expr.is_in(pl.Series(list(kind.values), dtype=pl.String).implode()).not_())
    else:
        for attr, test in (("ge", expr.__lt__), ("gt", expr.__le__), ("le", expr.__gt__),
                           ("lt", expr.__ge__)):
            limit = getattr(kind, attr, None)
            if limit is not None:
                bad.append(test(limit))
        if getattr(kind, "multiple_of", None) is not None:
            bad.append(expr % kind.multiple_of != 0)
    return pl.any_horizontal(bad).fill_null(False) if bad else None


def _bound_flags() -> list[pl.Expr]:
    """The msgspec constraints of the fields read, as few expressions as possible.

    Text lengths are grouped by bound (one horizontal minimum or maximum per bound);
    literals and number bounds are one expression each (:func:`_bounds`).
    """
    flags: list[pl.Expr] = []
    minimum: dict[int, list[str]] = {}
    maximum: dict[int, list[str]] = {}
    for name in _READ_FIELDS:
        kind = _TYPES[name]
        if isinstance(kind, msgspec.inspect.StrType):
            if kind.min_length:
                minimum.setdefault(kind.min_length, []).append(name)
            if kind.max_length is not None:
                maximum.setdefault(kind.max_length, []).append(name)
        elif (bad := _bounds(pl.col(name), kind)) is not None:
            flags.append(bad)
    # Conservative: a text of more bytes than its maximum in characters is flagged
    # (msgspec, which counts characters, decides it), so no character count is needed.
    flags += [(pl.min_horizontal(pl.col(names).str.len_bytes()) < bound).fill_null(False)
              for bound, names in minimum.items()]
    flags += [(pl.max_horizontal(pl.col(names).str.len_bytes()) > bound).fill_null(False)
              for bound, names in maximum.items()]
    return flags


_BOUND_FLAGS: Final = _bound_flags()


def shape_flags(frame: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """The rows of a :func:`read_plain_lines` frame that break a msgspec constraint, and the times.

    Returns:
        ``(bad, occurred_at)``: ``bad`` is True where a required field is missing, a
        literal, length or bound is broken, or the event time is not strict RFC 3339
        with an offset (msgspec would reject the row, or parse it in a way this path
        does not, so it goes the per-message way); ``occurred_at`` is the event time in
        UTC microseconds (meaningless where ``bad``).
    """
    time_text = pl.col("occurred_at")
    # Rows whose text is not strict RFC 3339 are flagged below: what polars makes of them
    # does not matter (they leave the frame), so the parse needs no when/then.
    parsed = (pl.when(time_text.str.ends_with("Z"))
              .then(time_text.str.head(-1) + "+00:00").otherwise(time_text)
              .str.to_datetime(_TIME_FORMAT, strict=False, time_unit="us", time_zone="UTC"))
    flags = [pl.col(name).is_null() for name in _NOT_NULL if name in READ_SCHEMA]
    flags += [pl.col(name).is_not_null() for name in _PER_MESSAGE_FIELDS]
    flags += _BOUND_FLAGS
    flags.append(time_text.str.contains(_TIME).not_() | parsed.is_null())
    checked = frame.select(pl.any_horizontal(flags).fill_null(True).alias("bad"), parsed.alias("occurred_at"))
    return checked.get_column("bad"), checked.get_column("occurred_at")
