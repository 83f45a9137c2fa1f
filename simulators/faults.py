"""What goes wrong in simulated traffic: one definition of each fault, for every generator.

The synthetic fleet (:func:`simulators.sources.synthetic.synthetic_events`) and the
scenario files (``faults:`` of ``simulators/scenarios/*.yaml``, :mod:`simulators.scenario`)
take the same frozen, closed pydantic models; :func:`simulators.traffic.answer` applies
them to a transaction. Offsets (``*_s``) are seconds of event time after the start of
the traffic; ``end_s: None`` means "until the traffic ends".

* :class:`TerminalFault`: one terminal fails everything in a window, with a response
  code (default ``58``, "transaction not permitted to terminal", terminal class) or,
  with ``response_code=None``, by timing out (``status = "timeout"``, no response code,
  ``latency_ms`` = :data:`simulators.traffic.AUTHORIZATION_TIMEOUT_MS`);
* :class:`Flapping`: a terminal fails for ``period_s``, recovers for ``period_s``, and so on;
* :class:`Silent`: a terminal sends nothing in a window;
* :class:`ChipDegradation`: a chip reader wearing out, falling back to the stripe;
* :class:`IssuerOutage`: ``share`` of all transactions get ``response_code`` (default
  ``91``, issuer or switch inoperative, technical class) after a slow answer;
* :class:`CardWave`: ``share`` of all transactions get a card decline (default ``54``).

In a scenario file each fault names its ``kind``; in Python the kind is implied by the
class (``TerminalFault(terminal_id="A1", start_s=10, end_s=20)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CardWave",
    "ChipDegradation",
    "Fault",
    "Flapping",
    "IssuerOutage",
    "ResponseCode",
    "Silent",
    "TerminalFault",
    "is_silent",
    "within",
]

_closed = ConfigDict(frozen=True, extra="forbid")
#: An ISO 8583 field 39 response code: two digits or capital letters.
ResponseCode = Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")]


class TerminalFault(BaseModel):
    """One terminal fails everything from ``start_s`` to ``end_s``; ``response_code: null`` times out."""

    model_config = _closed
    kind: Literal["terminal_fault"] = "terminal_fault"
    terminal_id: str
    start_s: float = Field(ge=0)
    end_s: float | None = None
    response_code: ResponseCode | None = "58"


class Flapping(BaseModel):
    """A terminal fails for ``period_s``, recovers for ``period_s``, and so on, from ``start_s``."""

    model_config = _closed
    kind: Literal["flapping"] = "flapping"
    terminal_id: str
    start_s: float = Field(ge=0)
    end_s: float | None = None
    period_s: float = Field(default=30.0, gt=0)
    response_code: ResponseCode | None = "91"


class Silent(BaseModel):
    """A terminal sends nothing from ``start_s`` to ``end_s`` (power, network, or a frozen application)."""

    model_config = _closed
    kind: Literal["silent"] = "silent"
    terminal_id: str
    start_s: float = Field(ge=0)
    end_s: float | None = None


class ChipDegradation(BaseModel):
    """A chip reader wearing out: from ``start_s`` a share of chip reads fail, rising linearly to
    ``max_failure_share`` at ``full_at_s``; a failed read falls back to the stripe (``swipe``)
    with probability ``fallback_share``, else the card is declined with ``response_code``."""

    model_config = _closed
    kind: Literal["chip_degradation"] = "chip_degradation"
    terminal_id: str
    start_s: float = Field(ge=0)
    full_at_s: float = Field(gt=0)
    max_failure_share: float = Field(default=0.6, gt=0, le=1)
    fallback_share: float = Field(default=0.5, ge=0, le=1)
    response_code: ResponseCode = "Q1"  # Visa: card authentication failed (card class)


class IssuerOutage(BaseModel):
    """Issuer or switch down: ``share`` of all transactions in the window get ``response_code`` (slowly)."""

    model_config = _closed
    kind: Literal["issuer_outage"] = "issuer_outage"
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    share: float = Field(default=0.9, gt=0, le=1)
    response_code: ResponseCode = "91"


class CardWave(BaseModel):
    """A wave of card declines across the fleet (e.g. a batch of cards expiring): ``share`` get ``response_code``."""

    model_config = _closed
    kind: Literal["card_wave"] = "card_wave"
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    share: float = Field(default=0.3, gt=0, le=1)
    response_code: ResponseCode = "54"


#: Any fault; in a scenario file the ``kind`` key tells which.
Fault = Annotated[TerminalFault | Flapping | Silent | ChipDegradation | IssuerOutage | CardWave,
                  Field(discriminator="kind")]


def within(offset: float, start: float, end: float | None) -> bool:
    """Whether ``offset`` is in ``[start, end)``; ``end`` ``None`` is open-ended."""
    return start <= offset and (end is None or offset < end)


def is_silent(faults: Sequence[Fault], terminal_id: str, offset: float) -> bool:
    """Whether a :class:`Silent` fault keeps ``terminal_id`` from sending at ``offset``."""
    return any(isinstance(f, Silent) and f.terminal_id == terminal_id and within(offset, f.start_s, f.end_s)
               for f in faults)
