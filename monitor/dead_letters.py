"""The dead-letter copy of a rejected message, bounded so that it always fits one request.

A rejected message can be as large as the broker allows, and its rejection detail
can quote it (a 700 KB string in an enum field becomes a 700 KB detail). The copy
sent to the dead-letter topic is bounded part by part, whatever came in:

============  ===========================================================  ==========
part          bound                                                          when cut
============  ===========================================================  ==========
value         :data:`VALUE_MAX_BYTES` (512 KiB), the head kept             header ``cardmon-truncated-from-bytes``
key           :data:`KEY_MAX_BYTES` (1 KiB), the head kept                 header ``cardmon-key-truncated-from-bytes``
each header   :data:`HEADER_MAX_BYTES` (1 KiB), cut on a character, ``…``  —
============  ===========================================================  ==========

With at most :data:`MAX_HEADERS` headers the whole record stays under 540 KiB, far
below the producer's ``max_request_size`` (:data:`MAX_REQUEST_BYTES`, 1 MiB) and a
broker's default ``message.max.bytes`` (1 MB). If a broker with a smaller limit still
refuses it (``MessageSizeTooLargeError``), :meth:`DeadLetter.minimal` is sent instead:
no key, no value, only the reason and where the message is (source topic, partition,
offset), so it can be read again from the source topic while it is retained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "HEADER_MAX_BYTES",
    "KEY_MAX_BYTES",
    "MAX_HEADERS",
    "MAX_REQUEST_BYTES",
    "VALUE_MAX_BYTES",
    "DeadLetter",
]

#: The dead-letter producer's ``max_request_size`` (aiokafka's default, set explicitly).
MAX_REQUEST_BYTES: Final = 1_048_576
#: Largest dead-letter value sent whole.
VALUE_MAX_BYTES: Final = 512 * 1024
#: Largest dead-letter key sent whole (keys are terminal IDs: a few bytes).
KEY_MAX_BYTES: Final = 1024
#: Largest value of one header (the detail; the others are short by construction).
HEADER_MAX_BYTES: Final = 1024
#: Most headers on one dead-letter record (ours; the source's are not copied).
MAX_HEADERS: Final = 10
#: Headers :meth:`DeadLetter.minimal` keeps.
_LOCATING: Final = frozenset({"cardmon-reason", "cardmon-source-topic", "cardmon-source-partition",
                              "cardmon-source-offset"})


def _cut_text(value: bytes, limit: int) -> bytes:
    """``value`` cut to ``limit`` bytes on a UTF-8 character boundary, ``…`` marking the cut."""
    if len(value) <= limit:
        return value
    ellipsis = "…".encode()
    return value[:limit - len(ellipsis)].decode("utf-8", errors="ignore").encode() + ellipsis


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record for the dead-letter topic, every part within its bound.

    Attributes:
        key: the (PAN-scrubbed) source key, at most :data:`KEY_MAX_BYTES`, or ``None``.
        value: the (PAN-scrubbed) source value, at most :data:`VALUE_MAX_BYTES`.
        headers: ``(name, value)`` pairs, at most :data:`MAX_HEADERS`, each value at
            most :data:`HEADER_MAX_BYTES`.
    """

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def bounded(cls, *, key: bytes | None, value: bytes,
                headers: Sequence[tuple[str, bytes]]) -> DeadLetter:
        """Build a dead letter from already PAN-scrubbed parts, cutting each to its bound.

        Args:
            key: the scrubbed source key, or ``None``.
            value: the scrubbed source value.
            headers: cardmon's headers (reason, detail, source); at most
                :data:`MAX_HEADERS` minus two (room for the truncation headers).

        Raises:
            ValueError: too many headers.
        """
        if len(headers) > MAX_HEADERS - 2:
            raise ValueError(f"at most {MAX_HEADERS - 2} headers, got {len(headers)}")
        kept = [(name, _cut_text(data, HEADER_MAX_BYTES)) for name, data in headers]
        if len(value) > VALUE_MAX_BYTES:
            # Too large for one produce request: keep the head, say how much there was.
            kept.append(("cardmon-truncated-from-bytes", str(len(value)).encode()))
            value = value[:VALUE_MAX_BYTES]
        if key is not None and len(key) > KEY_MAX_BYTES:
            kept.append(("cardmon-key-truncated-from-bytes", str(len(key)).encode()))
            key = key[:KEY_MAX_BYTES]
        return cls(key, value, kept)

    def minimal(self, error: str) -> DeadLetter:
        """The last resort when the broker refuses this copy: where the message is, and why.

        Args:
            error: why the full copy was refused (an error class name), as a header.
        """
        headers = [(name, data) for name, data in self.headers if name in _LOCATING]
        headers.append(("cardmon-dead-letter-error", _cut_text(error.encode(), HEADER_MAX_BYTES)))
        return DeadLetter(None, b"", headers)

    @property
    def size(self) -> int:
        """Bytes of key, value and headers (names and values), without record framing."""
        return (len(self.key or b"") + len(self.value)
                + sum(len(name.encode()) + len(data) for name, data in self.headers))
