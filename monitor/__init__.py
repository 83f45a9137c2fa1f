"""cardmon: card-transaction health monitor (ISO 8583 outcomes, VIP alerts, terminal health)."""

__version__ = "0.1.0"
