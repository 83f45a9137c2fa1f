"""The report as one self-contained HTML page (jinja2), and as PDF (WeasyPrint) where installed.

:func:`render_html` fills ``templates/report.html`` (autoescaped) with a
:class:`~monitor.report.data.ReportData` and its plots (:mod:`monitor.report.plots`):
CSS inline, plots as ``data:`` URIs, and a Content-Security-Policy (``default-src
'none'``) that would refuse any request the page tried to make, so the file opens the
same from a mail attachment, a share or a disk with no network. The numbers are also
embedded as JSON (``<script type="application/json" id="report-figures">``, never run)
for a test or a reader's script to check.

:func:`write_pdf` lays the same HTML out as PDF with WeasyPrint (the ``pdf`` extra,
which needs the system's Pango); :class:`PdfUnavailable` says so when it is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import jinja2

from monitor.errors import CardmonError
from monitor.report import plots
from monitor.report.data import ReportData, figures
from monitor.report.words import CLASS_WORDS, OUTCOME_WORDS, RECOVERY_WORDS, duration, words

__all__ = ["PdfUnavailable", "render_html", "write_pdf"]

# Dates and times in the header: a head of cards reads "07 Dec 2026 09:00", not ISO 8601.
_WHEN: Final = "%d %b %Y %H:%M"

_ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("monitor.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=False,
)


class PdfUnavailable(CardmonError):
    """WeasyPrint (the ``pdf`` extra) or the system library it needs (Pango) is missing."""


def _json(data: ReportData) -> str:
    # "<" escaped: a name holding "</script>" cannot end the block early.
    return json.dumps(figures(data), ensure_ascii=False, sort_keys=False).replace("<", "\\u003c")


def render_html(data: ReportData) -> str:
    """Return the report's whole HTML page.

    Args:
        data: the counted report (:func:`monitor.report.data.gather`).

    Returns:
        An HTML document (UTF-8 text) with no external reference.
    """
    if data.team:
        scope = f"Team of {_lead_name(data)}"
    else:
        scope = "Whole bank"
    drawn = {
        "failures": plots.failures_by_day(data.failures_by_day),
        "times": plots.times(data.acknowledge.seconds, data.first_contact.seconds),
        "outcomes": plots.outcomes(data.outcomes),
        "recovery": plots.recovery(data.recovery),
        "managers": plots.manager_times(data.managers) if 1 < len(data.managers) <= 30 else None,
    }
    zone_since = data.since.astimezone(data.generated_at.tzinfo)
    zone_until = data.until.astimezone(data.generated_at.tzinfo)
    return _ENV.get_template("report.html").render(
        title="Fast-correction report",
        scope=scope,
        data=data,
        plots=drawn,
        since=zone_since.strftime(_WHEN),
        until=zone_until.strftime(_WHEN),
        generated=data.generated_at.strftime(_WHEN),
        zone=data.zone,
        duration=duration,
        words=words,
        class_words=CLASS_WORDS,
        outcome_words=OUTCOME_WORDS,
        recovery_words=RECOVERY_WORDS,
        figures_json=_json(data),
    )


def _lead_name(data: ReportData) -> str:
    for manager in data.managers:
        if manager.manager_id == data.team:
            return f"{manager.manager_name} ({data.team})"
    return str(data.team)


def write_pdf(html: str, out: Path) -> None:
    """Lay ``html`` out as an A4 PDF at ``out`` (WeasyPrint; plots stay vectors).

    Raises:
        PdfUnavailable: WeasyPrint is not installed (``pip install 'cardmon[pdf]'``) or
            cannot load Pango (``apt-get install libpango-1.0-0 libpangoft2-1.0-0``).
        OSError: ``out`` cannot be written.
    """
    try:
        import weasyprint  # type: ignore[import-untyped]  # optional: only --pdf needs it
    except ImportError as error:
        raise PdfUnavailable(
            "PDF needs WeasyPrint and the system's Pango: pip install 'cardmon[pdf]' "
            f"and apt-get install libpango-1.0-0 libpangoft2-1.0-0 ({error})"
        ) from None
    except OSError as error:  # WeasyPrint found, Pango not
        raise PdfUnavailable(
            f"WeasyPrint cannot load Pango: apt-get install libpango-1.0-0 "
            f"libpangoft2-1.0-0 ({error})"
        ) from None
    weasyprint.HTML(string=html).write_pdf(out)
