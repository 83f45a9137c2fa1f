"""Terminal health: registry and opening hours, silent terminals, device status,
sliding windows, health states, fleet aggregation and their Prometheus collector."""

import lazy_loader

# Names resolve on first use, so importing one submodule does not load the others.

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "aggregate": [
            "AggregateRules",
            "group_stats",
            "worst_terminals",
        ],
        "collector": [
            "HealthCollector",
        ],
        "scheduling": [
            "SchedulerJobMetrics",
            "silent_detection",
        ],
        "baseline": [
            "Baseline",
            "learn_baseline",
        ],
        "silent": [
            "SilentDetector",
            "SilentRules",
        ],
        "state": [
            "HealthBook",
            "HealthRules",
        ],
        "state_rules": [
            "HealthState",
            "StateRules",
        ],
        "device_status": [
            "DeviceStatusBook",
            "DeviceStatusEvent",
            "StatusConsumer",
            "decode_status_batch",
        ],
        "terminals": [
            "Terminal",
            "TerminalRegistry",
            "TerminalRegistryLoader",
            "is_open",
        ],
        "windows": [
            "TerminalWindows",
            "WindowRules",
            "WindowSpec",
        ],
    },
)
