"""Constants shared by the builders and ``push``, importable without grafana-foundation-sdk.

``cardmon dashboards push`` needs only ``grafana-client`` and the committed JSON; the
SDK (an optional extra) is needed to *build* the JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["DATASOURCE_UID", "GRAFANA_VERSION", "JSON_DIR"]

#: UID of the Prometheus datasource every panel and query refers to (provisioned).
DATASOURCE_UID: Final = "cardmon-prometheus"
#: Grafana minor version the pinned grafana-foundation-sdk generates for.
GRAFANA_VERSION: Final = "10.1"
#: Where the generated dashboard JSON is committed (one ``<uid>.json`` per dashboard).
JSON_DIR: Final = Path(__file__).resolve().parent / "json"
