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

from dataclasses import dataclass
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
_PARSE_OPTIONS: Final = pa_json.ParseOptions(
    explicit_schema=pa.schema([(name, _ARROW_TYPES[dtype]) for name, dtype in READ_SCHEMA.items()]),
    newlines_in_values=False, unexpected_field_behavior="ignore")
#: One block for the whole batch (5,000 messages of ~500 bytes is 2.5 MB); arrow's
#: threads parse it in chunks of this size.
_READ_OPTIONS: Final = pa_json.ReadOptions(use_threads=True, block_size=1 << 20)
#: A line holding one of these is not plain: an escape (keys and values are compared as
#: written: an escaped ``"p\u0061n"`` is a raw PAN to msgspec), a raw ``pan`` (masked and
#: reported by the reference), ``decline_reasons`` (cleaned one by one). Each is looked
#: for in the whole block first (one ``in``), per line only when the block has it.
_NOT_PLAIN: Final = ("\\", '"pan"', '"decline_reasons"')
#: Longest plain line (bytes). Unknown members may nest objects or arrays, which Arrow
#: reads at any depth but msgspec only to about the interpreter's recursion limit
#: (1,000 frames, less the caller's): a level costs at least 4 bytes, so a line this
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
        frame: one row per plain message, columns of :data:`READ_SCHEMA` (text, numbers),
            in batch order; ``None`` when no message was plain.
        indices: for each row of ``frame``, its position in the batch.
        others: positions of the messages not read here (not plain, or a duplicated key).
    """

    frame: pl.DataFrame | None
    indices: list[int]
    others: list[int]


def read_plain_lines(values: list[bytes | None]) -> PlainLines | None:
    """Read the plain messages of a batch with one Arrow JSON read (outside the GIL).

    Args:
        values: raw message values in batch order (``None`` is a tombstone: not plain).

    Returns:
        A :class:`PlainLines`, or ``None`` when Arrow refused the plain lines (a
        duplicated key, a value of the wrong JSON type, a raw control character, a
        number out of range...): the caller then decodes the whole batch per message.
    """
    lines = _text_lines(values)
    try:
        block: bytes | None = b"\n".join(values)  # type: ignore[arg-type]
    except TypeError:  # a tombstone
        block = None
    flags = [lines.str.starts_with("{"), lines.str.ends_with("}"),
             lines.str.len_bytes() <= PLAIN_LINE_MAX_BYTES,
             lines.str.contains("\n", literal=True).not_()]
    # A backslash is one byte: memchr over the block is quicker than a pass per line.
    flags += [lines.str.contains(needle, literal=True).not_() for needle in _NOT_PLAIN
              if len(needle) > 1 or block is None or needle.encode() in block]
    plain = pl.select(pl.all_horizontal(flags).fill_null(False)).to_series()
    if plain.all():
        indices = list(range(len(values)))
        others: list[int] = []
        assert block is not None  # all plain: no tombstone
    else:
        indices = plain.arg_true().to_list()
        others = (~plain).arg_true().to_list()
        if not indices:
            return PlainLines(None, [], others)
        block = b"\n".join([values[i] for i in indices])  # type: ignore[misc]
    try:
        table = pa_json.read_json(pa.py_buffer(block), read_options=_READ_OPTIONS,
                                  parse_options=_PARSE_OPTIONS)
    except (pa.ArrowException, ValueError):  # ValueError: Arrow's text of a bad UTF-8 message
        return None
    if table.num_rows != len(indices):
        return None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return PlainLines(frame, indices, others)


def _text_lines(values: list[bytes | None]) -> pl.Series:
    """The values as a String series; ``None`` where a value is not valid UTF-8 (or is ``None``)."""
    raw = pl.Series("line", values, dtype=pl.Binary)
    try:
        return raw.cast(pl.String)
    except pl.exceptions.PolarsError:  # some value is not UTF-8: find which, in Python (rare)
        return pl.Series("line", [_utf8_or_none(value) for value in values], dtype=pl.String)


def _utf8_or_none(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _bounds(expr: pl.Expr, kind: Any) -> pl.Expr | None:
    """True where ``expr`` breaks ``kind``'s msgspec constraints (False on null); ``None``: none."""
    bad: list[pl.Expr] = []
    if isinstance(kind, msgspec.inspect.StrType):
        if kind.min_length is not None and kind.min_length > 0:
            # The byte length is cheaper; a character count only where it might be short.
            bad.append(expr.str.len_bytes() < kind.min_length if kind.min_length == 1
                       else expr.str.len_chars() < kind.min_length)
        if kind.max_length is not None:
            bad.append((expr.str.len_bytes() > kind.max_length)
                       & (expr.str.len_chars() > kind.max_length))
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


def shape_flags(frame: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """The rows of a :func:`read_plain_lines` frame that break a msgspec constraint, and the times.

    Returns:
        ``(bad, occurred_at)``: ``bad`` is True where a required field is missing, a
        literal, length or bound is broken, or the event time is not strict RFC 3339
        with an offset (msgspec would reject the row, or parse it in a way this path
        does not, so it goes the per-message way); ``occurred_at`` is the event time in
        UTC microseconds (null where ``bad``).
    """
    time_text = pl.col("occurred_at")
    parsed = (pl.when(time_text.str.contains(_TIME))
              .then(time_text.str.replace(r"Z$", "+00:00")
                    .str.to_datetime(_TIME_FORMAT, strict=False, time_unit="us", time_zone="UTC"))
              .otherwise(None))
    flags = [pl.col(name).is_null() for name in _NOT_NULL if name in READ_SCHEMA]
    flags += [bad for name in _READ_FIELDS
              if (bad := _bounds(pl.col(name), _TYPES[name])) is not None]
    flags.append(time_text.is_not_null() & parsed.is_null())
    checked = frame.select(pl.any_horizontal(flags).alias("bad"), parsed.alias("occurred_at"))
    return checked.get_column("bad"), checked.get_column("occurred_at")
