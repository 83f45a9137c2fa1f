"""The fast-correction report (``cardmon report``): how fast VIP failures were corrected.

Three steps, one module each, imports going down:

1. :mod:`~monitor.report.data` counts what the report shows from the alert store
   (:func:`gather` → :class:`ReportData`; :func:`figures` → the JSON-able numbers);
2. :mod:`~monitor.report.plots` draws the plots (matplotlib, SVG ``data:`` URIs), with
   :mod:`~monitor.report.words` for the plain words of every code;
3. :mod:`~monitor.report.render` writes the self-contained HTML page (jinja2) and, where
   WeasyPrint is installed, the PDF.

``docs/report.md`` says what each number means and its limits.
"""

from __future__ import annotations

from monitor.report.data import Distribution, ManagerSummary, ReportData, figures, gather
from monitor.report.render import PdfUnavailable, render_html, write_pdf

__all__ = [
    "Distribution",
    "ManagerSummary",
    "PdfUnavailable",
    "ReportData",
    "figures",
    "gather",
    "render_html",
    "write_pdf",
]
