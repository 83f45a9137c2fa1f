"""VIP alerts into an existing Prometheus Alertmanager (``POST /api/v2/alerts``).

A bank that already routes, groups, silences and receives alerts in Alertmanager can
have cardmon's VIP alerts there too, as the global sink ``alertmanager``. Each alert
is posted once (the delivery worker retries until Alertmanager accepts it; posting
the same label set again only refreshes it) as::

    [{"labels": {...}, "annotations": {...}, "startsAt": "...", "endsAt": "...",
      "generatorURL": "..."}]

Labels (identity, routing, silences — keep them few and free of client data):

* ``alertname="CardmonVipFailure"``, ``severity`` (low/medium/high), ``tier``;
* ``manager_id`` (route to the manager's team), ``outcome`` (outcome class of the
  latest failure), ``terminal_id`` (silence a terminal under repair);
* ``alert_id`` (cardmon's alert, so two clients failing at one terminal stay two
  alerts and the API's ``/alerts/{id}`` can be found).

Privacy: ``customer_id``, the client's name and card data are **not** labels:
labels are copied into silences, inhibition, grouping keys, Alertmanager's own logs
and every receiver. The annotations carry what the manager's message says:
``summary`` (the subject: client name, tier, what failed), ``description`` (the
rendered text: masked PAN only — first six and last four, PCI DSS 3.4 display
masking — never a raw PAN; the text is PAN-scrubbed before it leaves the renderer),
``suggested_action`` and ``customer_id`` (the bank's client number, which the
manager needs to act; it is not card data).

``startsAt`` is the earliest failure of the alert; ``endsAt`` is ``startsAt`` plus
``hold_seconds`` if given, else left out so Alertmanager applies its
``resolve_timeout``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from monitor.alerts.delivery.channels import DeliveryError
from monitor.alerts.messages.alert import AlertMessage
from monitor.secrets import scrub_url, url_host

__all__ = ["ALERTNAME", "AlertmanagerChannel", "alertmanager_alert"]

#: The ``alertname`` label of every cardmon VIP alert.
ALERTNAME: Final = "CardmonVipFailure"
_API_PATH: Final = "/api/v2/alerts"


def alertmanager_alert(
    message: AlertMessage,
    *,
    generator_url: str | None = None,
    hold_seconds: float | None = None,
) -> dict[str, Any]:
    """Return the Alertmanager API v2 ``postableAlert`` for one rendered alert.

    Args:
        message: the rendered alert (its ``payload`` is the ``cardmon.alert.v1`` shape).
        generator_url: link back to the alert; ``{alert_id}`` is replaced, e.g.
            ``https://cardmon.bank.example/alerts/{alert_id}``.
        hold_seconds: how long after the first failure Alertmanager keeps it firing;
            ``None`` leaves ``endsAt`` out (Alertmanager's ``resolve_timeout``).

    Returns:
        A JSON-able dict with ``labels``, ``annotations``, ``startsAt`` and optional
        ``endsAt`` / ``generatorURL``.

    Raises:
        DeliveryError: the payload lacks the facts the labels need.
    """
    payload = message.payload
    try:
        events = payload["events"]
        latest = events[0]  # the payload lists events newest first
        started = min(datetime.fromisoformat(e["occurred_at"]) for e in events)
        labels = {
            "alertname": ALERTNAME,
            "severity": str(payload["severity"]),
            "tier": str(payload["customer"]["tier"]),
            "manager_id": str(payload["manager"]["manager_id"]),
            "outcome": str(latest["outcome"]),
            "terminal_id": str(latest["terminal_id"]),
            "alert_id": message.alert_id,
        }
        annotations = {
            "summary": message.subject,
            "description": message.text,
            "suggested_action": str(payload["suggested_action"]),
            "customer_id": str(payload["customer"]["customer_id"]),
        }
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise DeliveryError(
            f"alert {message.alert_id}: payload cannot be posted to Alertmanager "
            f"({type(error).__name__}: {error})") from error
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": started.isoformat(),
    }
    if hold_seconds is not None:
        alert["endsAt"] = (started + timedelta(seconds=hold_seconds)).isoformat()
    if generator_url:
        alert["generatorURL"] = generator_url.replace("{alert_id}", message.alert_id)
    return alert


class AlertmanagerChannel:
    """Posts each alert to an Alertmanager (API v2).

    Args:
        url: Alertmanager's base URL (``http://alertmanager:9093``); a path prefix
            (``--web.route-prefix``) is kept.
        client: a shared ``httpx.AsyncClient``; ``None`` makes one per send.
        timeout: seconds for the whole request.
        generator_url: see :func:`alertmanager_alert`.
        hold_seconds: see :func:`alertmanager_alert`.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        generator_url: str | None = None,
        hold_seconds: float | None = None,
    ) -> None:
        self._endpoint = url.rstrip("/") + _API_PATH
        self._client = client
        self._timeout = timeout
        self._generator_url = generator_url
        self._hold_seconds = hold_seconds

    def __repr__(self) -> str:
        return f"AlertmanagerChannel(host={url_host(self._endpoint)!r}, timeout={self._timeout})"

    async def send(self, message: AlertMessage) -> None:
        """Post the alert; anything but 200 raises.

        Raises:
            DeliveryError: the payload lacks facts, Alertmanager answered non-2xx (400
                names its reason, e.g. an invalid label), or the request failed
                (connection, timeout). The text names the host only: the URL's
                ``user:pass@`` or token never appears.
        """
        body = [alertmanager_alert(message, generator_url=self._generator_url,
                                   hold_seconds=self._hold_seconds)]
        host = url_host(self._endpoint)
        try:
            if self._client is None:
                async with httpx.AsyncClient() as client:
                    response = await client.post(self._endpoint, json=body, timeout=self._timeout)
            else:
                response = await self._client.post(self._endpoint, json=body, timeout=self._timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            text = scrub_url(str(error), self._endpoint)
            raise DeliveryError(f"Alertmanager at {host}: {type(error).__name__}"
                                + (f": {text}" if text else "")) from None
        if not response.is_success:
            reason = scrub_url(response.text.strip()[:200], self._endpoint)
            raise DeliveryError(f"Alertmanager at {host} answered HTTP {response.status_code}: {reason}")
