"""Grafana dashboards of cardmon, as code.

The Python builders (grafana-foundation-sdk, Grafana 10.1) in :mod:`dashboards.fleet`,
:mod:`dashboards.vip` and :mod:`dashboards.pipeline` generate the JSON committed
under ``dashboards/json/`` (:mod:`dashboards.build`, ``python -m dashboards.build``);
the provisioning files under ``dashboards/provisioning/`` load it into Grafana with
the Prometheus datasource at the fixed UID :data:`DATASOURCE_UID`;
:func:`dashboards.push.push` uploads it to a running Grafana through its HTTP API.
Only building needs grafana-foundation-sdk; this package and ``push`` import without it.
"""

from dashboards._constants import DATASOURCE_UID, GRAFANA_VERSION, JSON_DIR

__all__ = ["DATASOURCE_UID", "GRAFANA_VERSION", "JSON_DIR"]
