"""The simulators package's public surface."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import simulators
import simulators.scenario
import simulators.whatif


@pytest.mark.parametrize("package", [simulators, simulators.scenario, simulators.whatif])
def test_package_exports_its_public_names(package: object) -> None:
    """The package's ``__all__`` is sorted and every name in it exists."""
    names = package.__all__  # type: ignore[attr-defined]
    assert names == sorted(names)
    assert all(hasattr(package, name) for name in names)


@pytest.mark.parametrize("module", ["simulators.fleet", "simulators.faults", "simulators.traffic",
                                    "simulators.sources.synthetic", "simulators.scenario.schema",
                                    "simulators.scenario.generation", "simulators.scenario.checking",
                                    "simulators.scenario.running", "simulators.scenario.receiver",
                                    "simulators.whatif.traffic",
                                    "simulators.whatif.rules", "simulators.whatif.outcome",
                                    "simulators.whatif.running", "simulators.whatif.comparing",
                                    "simulators.whatif.rendering"])
def test_modules_list_what_they_export(module: str) -> None:
    """Each simulators module has an ``__all__`` whose every name exists."""
    loaded = importlib.import_module(module)
    assert loaded.__all__ and all(hasattr(loaded, name) for name in loaded.__all__)


def test_loading_a_scenario_does_not_import_the_monitor() -> None:
    """Reading and generating a scenario loads no MonitorApp, Kafka client or alert store."""
    code = ("import sys; from simulators.scenario import resolve_scenario, scenario_events; "
            "next(scenario_events(resolve_scenario('issuer-outage'))); "
            "print(sorted(m for m in ('monitor.app', 'aiokafka', 'monitor.alerts.store') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
