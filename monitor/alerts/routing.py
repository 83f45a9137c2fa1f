"""Which channels an alert goes through: a manager's per-severity preferences.

The registry's optional ``channels`` column of a manager holds the preferences in
one compact line (see :func:`parse_channels`)::

    high=email,webhook,apprise:tgram://123456:ABCdef/987654;medium=email;low=

* a rule is ``<severity>=<targets>``, rules are separated by ``;``; ``*=`` sets
  every severity that has no rule of its own;
* a target is ``email`` (the manager's address), ``webhook`` (the manager's
  ``webhook_url``, signed JSON) or ``apprise:<URL>`` (any Apprise URL: ``mailto://``,
  ``json://``, ``wecombot://``, ``dingtalk://``, ``slack://``, ``workflows://`` (Teams),
  ``tgram://``, SMS gateways...), separated by ``,``;
* an empty rule (``low=``) means "no message at that severity";
* a severity without a rule, or a manager without the column, gets the default:
  e-mail if the manager has an address, webhook if they have a URL.

Apprise URLs carry tokens. They are kept apart (``Manager.apprise_urls``) and a
delivery row names one by its index only (``apprise:0``), so no URL reaches the
outbox, a log line, an error text or a metric label; the delivery worker looks the
URL up when it sends (:func:`apprise_target`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Final

from monitor.domain import SEVERITIES, Manager, Severity

__all__ = [
    "MANAGER_CHANNEL_KINDS",
    "PERSON_CHANNEL_SQL",
    "RECORD_SINKS",
    "ChannelPreferences",
    "Route",
    "apprise_target",
    "channel_kind",
    "channels_for",
    "default_channels",
    "is_person_channel",
    "parse_channels",
    "unreachable_managers",
]

#: Channel kinds a manager's preferences may name. They are also the only channels
#: that reach a person: a delivery through one of them makes an alert ``notified``.
MANAGER_CHANNEL_KINDS: Final = ("email", "webhook", "apprise")
#: Sinks that only record (a terminal, a file). They get late alerts too; they never
#: make an alert ``notified``. ``alertmanager`` is neither: it is the operations sink
#: (it routes to the bank's receivers, which cardmon cannot see), so it never makes an
#: alert ``notified`` either, and it gets no late alert (that would page operations).
RECORD_SINKS: Final = ("console", "jsonl")
#: SQL condition "``d.channel`` reaches a person" (outbox rows aliased ``d``).
PERSON_CHANNEL_SQL: Final = "(d.channel IN ('email', 'webhook') OR d.channel LIKE 'apprise:%')"
# Split only where the next rule or target starts, so ';' and ',' inside a URL survive.
_RULE_SPLIT: Final = re.compile(r";(?=\s*(?:low|medium|high|\*)\s*=)")
_TARGET_SPLIT: Final = re.compile(r",(?=\s*(?:email|webhook)\s*(?:,|$)|\s*apprise:)")
_APPRISE_PREFIX: Final = "apprise:"


@dataclass(frozen=True, slots=True)
class Route:
    """One way an alert reaches its manager.

    Attributes:
        channel: the delivery row's channel name (``email``, ``webhook``, ``apprise:0``);
            unique per alert, so one alert reaches one target once.
        kind: the channel kind the worker sends through (``email``, ``webhook``, ``apprise``).
        target: index into ``Manager.apprise_urls`` for ``apprise``, else ``None``.
    """

    channel: str
    kind: str
    target: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelPreferences:
    """A parsed ``channels`` column.

    Attributes:
        channels: severity → route keys (``email``, ``webhook``, ``apprise:<index>``).
        apprise_urls: the distinct Apprise URLs, in order of first mention.
    """

    channels: dict[Severity, tuple[str, ...]]
    apprise_urls: tuple[str, ...]

    def __repr__(self) -> str:
        # The URLs are secrets: say how many there are, never what they are.
        return f"ChannelPreferences(channels={self.channels!r}, apprise_urls=<{len(self.apprise_urls)} hidden>)"


def parse_channels(text: str | None) -> ChannelPreferences:
    """Parse a manager's ``channels`` column.

    Args:
        text: the column value; ``None`` or blank means "defaults for every severity".

    Returns:
        The preferences; severities without a rule are absent from ``channels``.

    Raises:
        ValueError: a rule has no ``=``, names an unknown severity twice or at all, or
            a target is not ``email``, ``webhook`` or ``apprise:<URL>``. The message
            quotes severities and target kinds only, never a URL.
    """
    if text is None or not text.strip():
        return ChannelPreferences({}, ())
    urls: dict[str, int] = {}  # <Apprise URL: its index>
    rules: dict[str, tuple[str, ...]] = {}  # <severity or "*": route keys>
    for number, rule in enumerate(_RULE_SPLIT.split(text.strip().rstrip(";")), start=1):
        severity, equals, targets = rule.partition("=")
        severity = severity.strip().lower()
        if not equals:
            raise ValueError(f"channels rule {number} has no '=' (expected e.g. 'high=email,webhook')")
        if severity not in (*SEVERITIES, "*"):
            raise ValueError(f"channels rule {number}: unknown severity {severity[:20]!r} "
                             f"(expected {', '.join(SEVERITIES)} or *)")
        if severity in rules:
            raise ValueError(f"channels: severity {severity!r} has two rules")
        keys: list[str] = []
        for target in _TARGET_SPLIT.split(targets) if targets.strip() else []:
            key = _route_key(target.strip(), urls, severity)
            if key not in keys:
                keys.append(key)
        rules[severity] = tuple(keys)
    fallback = rules.pop("*", None)
    channels: dict[Severity, tuple[str, ...]] = {}
    for severity in SEVERITIES:
        if severity in rules:
            channels[severity] = rules[severity]
        elif fallback is not None:
            channels[severity] = fallback
    return ChannelPreferences(channels, tuple(urls))


def _route_key(target: str, urls: dict[str, int], severity: str) -> str:
    if target in ("email", "webhook"):
        return target
    if target.startswith(_APPRISE_PREFIX):
        url = target[len(_APPRISE_PREFIX):].strip()
        if "://" not in url:
            raise ValueError(f"channels rule {severity!r}: an apprise target is not a URL "
                             "(expected apprise:<scheme>://...)")
        index = urls.setdefault(url, len(urls))
        return f"apprise:{index}"
    kind = target.split(":", 1)[0][:20]
    raise ValueError(f"channels rule {severity!r}: unknown target {kind!r} "
                     "(expected email, webhook or apprise:<URL>)")


def default_channels(manager: Manager) -> tuple[str, ...]:
    """Today's routing: ``email`` if the manager has an address, ``webhook`` if a URL."""
    return tuple(name for name, wanted in (("email", manager.email),
                                           ("webhook", manager.webhook_url)) if wanted)


def is_person_channel(channel: str) -> bool:
    """Whether a delivery row's channel reaches a person (``email``, ``webhook``, ``apprise:<n>``).

    Only these make an alert ``notified``; sinks (``console``, ``jsonl``,
    ``alertmanager``) and the fallback never do.
    """
    return channel_kind(channel) in MANAGER_CHANNEL_KINDS


def channel_kind(channel: str) -> str:
    """The channel kind of a delivery row's channel name: ``apprise:0`` → ``apprise``.

    This is what metrics label and what the worker's channel map is keyed by; it
    never holds a target.
    """
    return channel.partition(":")[0]


def channels_for(manager: Manager, severity: Severity, enabled: Collection[str]) -> list[Route]:
    """Return the routes of an alert of ``severity`` to ``manager``.

    Args:
        manager: the manager (with preferences from the registry).
        severity: the alert's severity.
        enabled: the channel kinds this monitor has configured (``email`` needs an
            SMTP relay; ``webhook`` and ``apprise`` are normally always there).

    Returns:
        Routes in preference order, without duplicates; a route whose kind is not
        enabled, or whose target the manager lacks (no address, no URL, an index
        past ``apprise_urls``), is left out.
    """
    keys = manager.channels.get(severity)
    if keys is None:
        keys = default_channels(manager)
    routes: list[Route] = []
    for key in dict.fromkeys(keys):
        kind = channel_kind(key)
        if kind not in enabled:
            continue
        if (kind == "email" and manager.email) or (kind == "webhook" and manager.webhook_url):
            routes.append(Route(key, kind))
        elif kind == "apprise":
            index = _index(key)
            if index is not None and index < len(manager.apprise_urls):
                routes.append(Route(key, kind, index))
    return routes


def _index(channel: str) -> int | None:
    _, _, key = channel.partition(":")
    return int(key) if key.isdigit() else None


def apprise_target(manager: Manager, channel: str) -> str:
    """Return the Apprise URL a delivery row's ``apprise:<index>`` channel points at.

    Raises:
        LookupError: the channel is not an ``apprise:<index>`` key or the manager has
            no URL at that index (the message names the index, never a URL).
    """
    index = _index(channel) if channel_kind(channel) == "apprise" else None
    if index is None:
        raise LookupError(f"channel {channel!r} is not an apprise:<index> route")
    if index >= len(manager.apprise_urls):
        raise LookupError(f"manager {manager.manager_id} has no Apprise URL #{index} "
                          f"(the registry lists {len(manager.apprise_urls)})")
    return manager.apprise_urls[index]


def unreachable_managers(
    managers: Iterable[Manager], enabled: Collection[str]
) -> dict[str, tuple[Severity, ...]]:
    """The managers no configured channel can reach, with the severities they miss.

    A severity is missed when the manager wants messages at it (a rule naming targets,
    or the default) but none of those routes works here (``channels_for`` is empty):
    an e-mail-only manager when no SMTP relay is configured, a manager with neither
    address nor URL. A severity the manager muted (``low=``) is not missed.

    Args:
        managers: the registry's managers.
        enabled: the channel kinds this monitor has configured.

    Returns:
        ``manager_id`` → missed severities (most severe first), for the managers that
        miss at least one; names no address or URL.
    """
    missed: dict[str, tuple[Severity, ...]] = {}
    for manager in managers:
        lost = tuple(severity for severity in reversed(SEVERITIES)
                     if manager.channels.get(severity) != () and not channels_for(manager, severity, enabled))
        if lost:
            missed[manager.manager_id] = lost
    return missed
