"""One renderer per message kind a manager receives.

``alert`` (one VIP alert), ``digest`` (the daily digest), ``incident_notice`` (an outage
that groups several VIP alerts). Renderers read the store; they never write it.
"""
