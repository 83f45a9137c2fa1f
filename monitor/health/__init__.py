"""Terminal health: registry and opening hours, silent terminals, device status."""

from monitor.health.terminals import Terminal, TerminalRegistry, TerminalRegistryLoader, is_open

__all__ = ["Terminal", "TerminalRegistry", "TerminalRegistryLoader", "is_open"]
