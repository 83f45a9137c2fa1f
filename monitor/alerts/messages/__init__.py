"""One renderer per message kind a manager receives.

``alert`` (one VIP alert), ``digest`` (the daily digest), ``summary`` (the alerts the
rate cap held, in one message), ``incident_notice`` (an outage that groups several VIP
alerts). Renderers read the store; they never write it, and they import no delivery
code (acknowledgement links come in as an :class:`~monitor.alerts.messages.alert.AckLinkMaker`).
"""
