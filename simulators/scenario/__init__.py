"""Fault scenarios with a known answer: load, generate, run through Kafka and the monitor, check.

A scenario is one YAML file in ``simulators/scenarios/`` (schema:
:class:`~simulators.scenario.schema.Scenario`, validated on load). It declares

* ``fleet``: the terminals (ID, channel, city, region, opening hours and time zone
  where they matter); a terminal with ``background: false`` (a foreign ATM) only
  sees the scripted ``visits``;
* ``managers`` and ``vips``: the VIP registry (clients, tiers, cards, managers; a
  manager's ``recovery_follow_up: true`` opts in to recovery follow-ups; with
  ``expect.follow_ups`` every manager's webhook is the runner's receiver,
  :mod:`~simulators.scenario.receiver`);
* ``traffic``: background transactions of ordinary (non-VIP) clients — Poisson
  arrivals at ``rate`` per second of *event* time for ``duration_s`` seconds,
  answered ``00`` except for the ``declines`` distribution (customer and card
  classes only, so technical failures come from the faults alone);
* ``visits``: scripted transactions of VIP clients, by offset in seconds;
* ``faults``: what goes wrong, by offset: ``terminal_fault``, ``issuer_outage``,
  ``card_wave``, ``silent``, ``flapping``, ``chip_degradation``
  (:mod:`simulators.faults`); visits go through the same faults as background traffic;
* ``expect``: the known answer (:class:`~simulators.scenario.schema.Expectations`):
  alerts per client and per manager, the incidents storm control opens (scope and key,
  flapping, ended, how many alerts and which managers), the recovery watch of clients'
  alerts (``recoveries``) and the recovery follow-ups each manager received
  (``follow_ups``, ``docs/recovery.md``), metric sample ranges from the monitor's
  registry, which terminals show failures, and terminal health states (``health``,
  ``health_others``).

One module per step: ``schema`` (the file's models, loading, the library) →
``generation`` (the events and registry files) → ``running`` (Kafka and a
:class:`monitor.app.MonitorApp`) → ``checking`` (``expect`` against what happened).
Names resolve on first use: loading or generating a scenario does not import the monitor.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "checking": ["Check", "Observed", "ScenarioReport", "check"],
        "generation": ["scenario_events"],
        "running": ["run_scenario"],
        "schema": ["SCENARIOS_DIR", "Scenario", "ScenarioError", "list_scenarios", "load_scenario",
                   "resolve_scenario"],
    },
)
