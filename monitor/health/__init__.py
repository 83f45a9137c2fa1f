"""Terminal health: registry and opening hours, silent terminals, device status."""

from monitor.health.scheduling import SchedulerJobMetrics, schedule_silent_detection
from monitor.health.silent import Baseline, SilentDetector, SilentRules, learn_baseline
from monitor.health.status import (
    DeviceStatusBook,
    DeviceStatusEvent,
    StatusConsumer,
    decode_status_batch,
)
from monitor.health.terminals import Terminal, TerminalRegistry, TerminalRegistryLoader, is_open

__all__ = [
    "Baseline",
    "DeviceStatusBook",
    "DeviceStatusEvent",
    "SchedulerJobMetrics",
    "SilentDetector",
    "SilentRules",
    "StatusConsumer",
    "Terminal",
    "TerminalRegistry",
    "TerminalRegistryLoader",
    "decode_status_batch",
    "is_open",
    "learn_baseline",
    "schedule_silent_detection",
]
