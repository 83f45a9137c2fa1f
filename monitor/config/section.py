"""What every settings section shares: frozen, no unknown key, no input quoted in an error."""

from __future__ import annotations

from typing import Final

from pydantic import ConfigDict

__all__ = ["SECTION_CONFIG"]

#: The model config of every section: a running monitor never changes its settings, a
#: misspelt key is refused, and errors never quote the input (a store URL, an SMTP
#: password or a token may be in it).
SECTION_CONFIG: Final = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
