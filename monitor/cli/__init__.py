"""The ``cardmon`` command line (Typer): one module per command group.

``cardmon run``       the monitor service against the configured Kafka;
``cardmon demo``      everything on an embedded broker with synthetic traffic;
``cardmon broker``    the embedded Kafka-compatible broker alone;
``cardmon simulate``  replay recorded files or synthetic fleets into Kafka; what-if for rules;
``cardmon alerts``    the alert store: ``export``, ``list``, ``ack``, ``resolve``, ``resend``;
``cardmon incidents`` storm-control incidents; ``cardmon dashboards`` Grafana dashboards;
``cardmon report``    the fast-correction report of a period (HTML, PDF).

:mod:`~monitor.cli.service` holds the service commands, :mod:`~monitor.cli.alerts`,
:mod:`~monitor.cli.incidents` and :mod:`~monitor.cli.dashboards` the groups,
:mod:`~monitor.cli.settings` and :mod:`~monitor.cli.store` what they share. Each command
imports what it runs when it runs, so ``cardmon --help`` loads neither polars nor Kafka.
The console script is ``monitor.cli:main``.
"""

from __future__ import annotations

import typer

from monitor.cli import alerts, dashboards, incidents, report, service, terminals, workspace

__all__ = ["app", "main"]

app = typer.Typer(help="cardmon: card-transaction health monitor for VIP clients and terminals.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
app.add_typer(alerts.app, name="alerts")
app.add_typer(incidents.app, name="incidents")
app.add_typer(terminals.app, name="terminals")
app.add_typer(dashboards.app, name="dashboards")
app.add_typer(workspace.app, name="workspace")
app.command("report")(report.report)
for command in (service.version, service.run, service.demo, service.broker):
    app.command()(command)


def _mount_simulators() -> None:
    from simulators.cli import app as simulate_app

    app.add_typer(simulate_app, name="simulate",
                  help="Replay recorded or synthetic traffic into Kafka; what-if for rule changes, offline.")


_mount_simulators()


def main() -> None:
    """Console-script entry point."""
    # One series per counter, not two: *_created doubles the scrape for no dashboard use.
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # type: ignore[no-untyped-call]
    app()
