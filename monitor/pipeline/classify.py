"""Outcome classes of authorization responses, from ``rules/response_codes.yaml``.

Each response code (ISO 8583:1987 field 39, plus a few network-specific codes such
as Visa ``N7``) maps to exactly one outcome class (:data:`monitor.domain.OUTCOMES`),
the standard's meaning and a one-sentence action for a relationship manager. A
``status: timeout`` event has no response code and classifies as ``technical``; a
code absent from the table classifies as ``unknown``.

Scalar look-ups (:meth:`ResponseCodeTable.outcome`, ``meaning``, ``action``) serve
alert text; :meth:`ResponseCodeTable.classify` labels a whole polars batch at once.

Each entry may carry ``translations`` (``fr`` and ``zh-Hans``, each ``{meaning, action}``;
a reserved range its meaning only), validated by :class:`monitor.i18n.RuleTexts` and
handed to :func:`monitor.i18n.remember_rule_text`, so a message or page shows the
manager's language while the alert keeps the English text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import polars as pl

from monitor.domain import OUTCOMES
from monitor.errors import ConfigurationError
from monitor.i18n import RuleTexts, remember_rule_text
from monitor.paths import rules_path
from monitor.rulebook import RuleFile, RuleFileError

__all__ = [
    "ResponseCode",
    "ResponseCodeError",
    "ResponseCodeTable",
    "default_table",
]

_CODE: Final = re.compile(r"^[0-9A-Z]{2}$")
_OUTCOMES: Final[frozenset[str]] = frozenset(OUTCOMES)
_DEFAULT_FILE: Final = "response_codes.yaml"


class ResponseCodeError(ConfigurationError):
    """The response-code table file is malformed; the message names the file and entry."""


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """One row of the table.

    Attributes:
        code: two characters ``[0-9A-Z]{2}`` (ISO 8583 field 39), e.g. ``"51"``.
        outcome: the outcome class, one of :data:`monitor.domain.OUTCOMES`.
        meaning: the standard's (or network's) wording.
        action: one sentence for a relationship manager.
        network: ``None`` for an ISO 8583:1987 code, else the network (``"Visa"``).
        translations: language (``fr``, ``zh-Hans``) → ``{"meaning": ..., "action": ...}``;
            empty when the file gives none (English everywhere).
    """

    code: str
    outcome: str
    meaning: str
    action: str
    network: str | None = None
    translations: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, hash=False)


class ResponseCodeTable:
    """Response code -> outcome class, meaning and action.

    Build one with :meth:`load` (or :func:`default_table` for the shipped file).
    """

    def __init__(
        self,
        codes: Iterable[ResponseCode],
        *,
        timeout: ResponseCode,
        unknown: ResponseCode,
        reserved: Mapping[str, str] | None = None,
    ) -> None:
        """Create a table.

        Args:
            codes: the known codes; each code at most once.
            timeout: meaning and action for ``status: timeout`` (outcome ``technical``).
            unknown: meaning and action for a code that is not in ``codes``.
            reserved: code -> wording of its reserved range (e.g. "Reserved for ISO
                use"); such codes classify as ``unknown`` but keep that meaning.

        Raises:
            ResponseCodeError: a code is duplicated or malformed.
        """
        self._codes: dict[str, ResponseCode] = {}  # <code: row>
        for row in codes:
            if row.code in self._codes:
                raise ResponseCodeError(f"response code {row.code!r} is listed twice")
            self._codes[row.code] = row
        self._timeout = timeout
        self._unknown = unknown
        self._reserved: dict[str, str] = dict(reserved or {})  # <code: range wording>
        # <frame has a status column: (outcome, response_meaning) expressions>, built on
        # first use (the table never changes; an expression costs Python time to build)
        self._columns: dict[bool, tuple[pl.Expr, pl.Expr]] = {}

    @classmethod
    def load(cls, path: Path | str | None = None) -> ResponseCodeTable:
        """Load and validate a table file.

        Args:
            path: the YAML file; defaults to ``rules/response_codes.yaml`` (see
                :func:`monitor.paths.rules_path`).

        Returns:
            The table.

        Raises:
            ResponseCodeError: the file is not valid YAML (a key written twice
                included: :class:`monitor.rulebook.RuleFile`), lacks a section, or has an
                entry with a bad code, class or missing text; the message names the
                file and the entry.
            FileNotFoundError: the file does not exist.
        """
        file = Path(path) if path is not None else rules_path(_DEFAULT_FILE)
        try:
            rules = RuleFile.read(file)
        except RuleFileError as error:
            if isinstance(error.__cause__, OSError):
                raise error.__cause__ from None  # FileNotFoundError and its kin, as they were
            raise ResponseCodeError(f"{file}: not valid YAML: {error.problem}") from error
        return cls.from_rules(rules)

    @classmethod
    def from_rules(cls, rules: RuleFile) -> ResponseCodeTable:
        """Build the table from a response-code rule file read once at start (see :meth:`load`).

        Raises:
            ResponseCodeError: a section is missing or an entry is invalid.
        """
        return _parse(rules.path, rules.document)

    def __len__(self) -> int:
        return len(self._codes)

    def __contains__(self, code: object) -> bool:
        return code in self._codes

    def __repr__(self) -> str:
        return f"ResponseCodeTable({len(self._codes)} codes)"

    @property
    def codes(self) -> Mapping[str, ResponseCode]:
        """The known codes, in file order (reserved codes are not included)."""
        return self._codes

    def _row(self, code: str | None, status: str) -> ResponseCode:
        if status == "timeout":
            return self._timeout
        row = self._codes.get(code) if code is not None else None
        return row if row is not None else self._unknown

    def outcome(self, code: str | None, status: str = "completed") -> str:
        """Return the outcome class of a response.

        Args:
            code: the response code (field 39), ``None`` when there is none.
            status: the event's ``status``; ``"timeout"`` always gives ``"technical"``.

        Returns:
            One of :data:`monitor.domain.OUTCOMES`; ``"unknown"`` for a code not in
            the table (including reserved codes) or a completed event without a code.
        """
        return self._row(code, status).outcome

    def meaning(self, code: str | None, status: str = "completed") -> str:
        """Return the standard's wording for a response (see :meth:`outcome` for arguments).

        A reserved code gives its range's wording ("Reserved for ISO use"); any
        other unknown code gives the table's ``unknown`` meaning.
        """
        if status != "timeout" and code is not None and code not in self._codes:
            reserved = self._reserved.get(code)
            if reserved is not None:
                return reserved
        return self._row(code, status).meaning

    def action(self, code: str | None, status: str = "completed") -> str:
        """Return the suggested relationship-manager action (see :meth:`outcome` for arguments)."""
        return self._row(code, status).action

    def classify(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Add ``outcome`` and ``response_meaning`` columns to a batch of events.

        Args:
            frame: has a ``response_code`` column (string, nullable) and optionally
                a ``status`` column (``"completed"``/``"timeout"``); without
                ``status`` every row counts as completed.

        Returns:
            ``frame`` with two string columns added (replacing any of the same name):
            ``outcome`` and ``response_meaning``, equal row by row to
            :meth:`outcome` and :meth:`meaning`.

        Raises:
            polars.exceptions.ColumnNotFoundError: ``response_code`` is missing.
        """
        with_status = "status" in frame.columns
        columns = self._columns.get(with_status)
        if columns is None:
            columns = self._columns[with_status] = self._expressions(with_status)
        return frame.with_columns(*columns)

    def _expressions(self, with_status: bool) -> tuple[pl.Expr, pl.Expr]:
        """The ``outcome`` and ``response_meaning`` expressions of :meth:`classify`."""
        codes = list(self._codes)
        meaning_codes = codes + list(self._reserved)
        code = pl.col("response_code").cast(pl.String)
        outcome = code.replace_strict(
            codes,
            [row.outcome for row in self._codes.values()],
            default=pl.lit(self._unknown.outcome),
            return_dtype=pl.String,
        )
        meaning = code.replace_strict(
            meaning_codes,
            [row.meaning for row in self._codes.values()] + list(self._reserved.values()),
            default=pl.lit(self._unknown.meaning),
            return_dtype=pl.String,
        )
        if with_status:
            timed_out = pl.col("status") == "timeout"
            outcome = pl.when(timed_out).then(pl.lit(self._timeout.outcome)).otherwise(outcome)
            meaning = pl.when(timed_out).then(pl.lit(self._timeout.meaning)).otherwise(meaning)
        return outcome.alias("outcome"), meaning.alias("response_meaning")


@cache
def default_table() -> ResponseCodeTable:
    """Return the shipped table (``rules/response_codes.yaml``), loaded once per process."""
    return ResponseCodeTable.load()


# --- parsing -----------------------------------------------------------------


def _text(file: Path, where: str, entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ResponseCodeError(f"{file}: {where}: {key!r} must be a non-empty string")
    return " ".join(value.split())


def _code(file: Path, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ResponseCodeError(
            f"{file}: {where}: code {value!r} must be a quoted string such as \"05\""
        )
    if not _CODE.match(value):
        raise ResponseCodeError(f"{file}: {where}: code {value!r} must match [0-9A-Z]{{2}}")
    return value


def _row(
    file: Path, where: str, entry: Any, code: str, *, outcome: str | None = None
) -> ResponseCode:
    if not isinstance(entry, Mapping):
        raise ResponseCodeError(f"{file}: {where}: must be a mapping")
    declared = entry.get("class")
    if declared not in _OUTCOMES:
        allowed = ", ".join(OUTCOMES)
        raise ResponseCodeError(f"{file}: {where}: class {declared!r} is not one of {allowed}")
    if outcome is not None and declared != outcome:
        raise ResponseCodeError(f"{file}: {where}: class must be {outcome!r}, not {declared!r}")
    network = entry.get("network")
    if network is not None and not isinstance(network, str):
        raise ResponseCodeError(f"{file}: {where}: 'network' must be a string")
    meaning, action = _text(file, where, entry, "meaning"), _text(file, where, entry, "action")
    translations = _translations(file, where, entry, ("meaning", "action"))
    for key, english in (("meaning", meaning), ("action", action)):
        remember_rule_text(english, {language: texts[key] for language, texts in translations.items()})
    return ResponseCode(
        code=code,
        outcome=declared,
        meaning=meaning,
        action=action,
        network=network,
        translations=translations,
    )


def _translations(file: Path, where: str, entry: Mapping[str, Any],
                  fields: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """An entry's ``translations`` (``{}`` if none): every language, each with exactly ``fields``."""
    given = entry.get("translations")
    if given is None:
        return {}
    try:
        texts = RuleTexts.model_validate(given).by_language()
    except ValueError as error:
        problem = str(error).splitlines()
        raise ResponseCodeError(f"{file}: {where}: translations: {' '.join(problem[1:3])}") from None
    checked: dict[str, dict[str, str]] = {}
    for language, value in texts.items():
        if isinstance(value, str) and fields == ("meaning",):
            value = {"meaning": value}
        if not isinstance(value, dict) or set(value) != set(fields):
            raise ResponseCodeError(f"{file}: {where}: translations.{language} must give exactly "
                                    f"{', '.join(fields)}")
        checked[language] = {key: " ".join(text.split()) for key, text in value.items()}
    return checked


def _reserved(file: Path, ranges: Any) -> dict[str, str]:
    if ranges is None:
        return {}
    if not isinstance(ranges, list):
        raise ResponseCodeError(f"{file}: 'reserved' must be a list of ranges")
    reserved: dict[str, str] = {}
    for position, entry in enumerate(ranges):
        where = f"reserved[{position}]"
        if not isinstance(entry, Mapping):
            raise ResponseCodeError(f"{file}: {where}: must be a mapping")
        first, last = _code(file, where, entry.get("from")), _code(file, where, entry.get("to"))
        if not (first.isdigit() and last.isdigit() and first <= last):
            raise ResponseCodeError(
                f"{file}: {where}: range {first}-{last} must be numeric, low to high"
            )
        meaning = _text(file, where, entry, "meaning")
        translated = _translations(file, where, entry, ("meaning",))
        remember_rule_text(meaning, {language: texts["meaning"] for language, texts in translated.items()})
        for number in range(int(first), int(last) + 1):
            reserved[f"{number:02d}"] = meaning
    return reserved


def _parse(file: Path, document: Any) -> ResponseCodeTable:
    if not isinstance(document, Mapping):
        raise ResponseCodeError(f"{file}: top level must be a mapping")
    for section in ("codes", "timeout", "unknown"):
        if section not in document:
            raise ResponseCodeError(f"{file}: missing section {section!r}")
    entries = document["codes"]
    if not isinstance(entries, list) or not entries:
        raise ResponseCodeError(f"{file}: 'codes' must be a non-empty list")
    rows: list[ResponseCode] = []
    seen: dict[str, int] = {}  # <code: position of its first entry>
    for position, entry in enumerate(entries):
        where = f"codes[{position}]"
        if not isinstance(entry, Mapping):
            raise ResponseCodeError(f"{file}: {where}: must be a mapping")
        code = _code(file, where, entry.get("code"))
        where = f"codes[{position}] (code {code!r})"
        if code in seen:
            raise ResponseCodeError(
                f"{file}: {where}: duplicate code, first listed at codes[{seen[code]}]"
            )
        seen[code] = position
        rows.append(_row(file, where, entry, code))
    reserved = _reserved(file, document.get("reserved"))
    overlap = sorted(set(reserved) & set(seen))
    if overlap:
        raise ResponseCodeError(f"{file}: codes {', '.join(overlap)} are both listed and reserved")
    return ResponseCodeTable(
        rows,
        timeout=_row(file, "timeout", document["timeout"], "", outcome="technical"),
        unknown=_row(file, "unknown", document["unknown"], "", outcome="unknown"),
        reserved=reserved,
    )
