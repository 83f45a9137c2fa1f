"""Terminal health: registry and opening hours, silent terminals, device status,
sliding windows, health states, fleet aggregation and their Prometheus collector."""

from monitor.health.aggregate import AggregateRules, group_stats, worst_terminals
from monitor.health.collector import HealthCollector
from monitor.health.scheduling import SchedulerJobMetrics, schedule_silent_detection
from monitor.health.silent import Baseline, SilentDetector, SilentRules, learn_baseline
from monitor.health.state import HealthBook, HealthRules, HealthState, StateRules
from monitor.health.status import (
    DeviceStatusBook,
    DeviceStatusEvent,
    StatusConsumer,
    decode_status_batch,
)
from monitor.health.terminals import Terminal, TerminalRegistry, TerminalRegistryLoader, is_open
from monitor.health.windows import TerminalWindows, WindowRules, WindowSpec

__all__ = [
    "AggregateRules",
    "Baseline",
    "DeviceStatusBook",
    "DeviceStatusEvent",
    "HealthBook",
    "HealthCollector",
    "HealthRules",
    "HealthState",
    "SchedulerJobMetrics",
    "SilentDetector",
    "SilentRules",
    "StateRules",
    "StatusConsumer",
    "Terminal",
    "TerminalRegistry",
    "TerminalRegistryLoader",
    "TerminalWindows",
    "WindowRules",
    "WindowSpec",
    "decode_status_batch",
    "group_stats",
    "is_open",
    "learn_baseline",
    "schedule_silent_detection",
    "worst_terminals",
]
