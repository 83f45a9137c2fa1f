"""Getting an alert to a person: the outbox worker, its channels and acknowledgement links.

``worker`` (claims due deliveries, sends, records the outcome) → ``channels`` (e-mail,
webhook, console, JSON lines), ``apprise`` (chat and paging services), ``alertmanager``
(Prometheus Alertmanager), ``fallback`` (the backup manager when a channel keeps
failing), ``links`` (signed acknowledgement links).
"""
