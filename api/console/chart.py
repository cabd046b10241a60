"""The compliance chart, drawn on the server as SVG: no charting library, nothing to load.

One small chart per clock: a bar per ISO week, as high as that week's compliance rate (met on
time over everything rated), grey where nothing could be rated yet. The numbers are also in the
table the board prints beside it, for anyone who does not see the chart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from markupsafe import Markup, escape

from api.console.web import translate
from disputeflow.db.reports import ComplianceRow

WIDTH, HEIGHT, BAR_GAP, LABEL_HEIGHT, TOP = 360, 120, 4, 18, 14


def merged(rows: Sequence[ComplianceRow]) -> dict[str, dict[str, tuple[int, int]]]:
    """clock -> week -> (met on time, rated), over every region of the rows."""
    figures: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for row in rows:
        cell = figures[row.clock][row.period]
        cell[0] += row.met_on_time
        cell[1] += row.met_on_time + row.met_late + row.breached_open + row.cancelled_after_breach
    return {clock: {week: (v[0], v[1]) for week, v in sorted(weeks.items())} for clock, weeks in sorted(figures.items())}


def compliance_svg(rows: Sequence[ComplianceRow], language: str) -> list[dict[str, object]]:
    """[{clock, svg, weeks: [(week, met, rated, rate)]}] for each clock that started in the range."""
    charts = []
    for clock, weeks in merged(rows).items():
        n = max(1, len(weeks))
        bar = (WIDTH - BAR_GAP * (n + 1)) / n
        plot = HEIGHT - LABEL_HEIGHT - TOP
        parts = []
        table = []
        for i, (week, (met, rated)) in enumerate(weeks.items()):
            rate = met / rated if rated else None
            x = BAR_GAP + i * (bar + BAR_GAP)
            h = plot * (rate if rate is not None else 1.0)
            y = TOP + plot - h
            css = "bar-none" if rate is None else "bar-good" if rate >= 0.9 else "bar-warn" if rate >= 0.7 else "bar-bad"
            label = "—" if rate is None else f"{rate:.0%}"
            parts.append(f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}"/>'
                         f'<text x="{x + bar / 2:.1f}" y="{max(y - 2, 10):.1f}" text-anchor="middle" '
                         f'class="bar-value">{escape(label)}</text>'
                         f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" '
                         f'class="bar-label">{escape(week[-3:])}</text>')
            table.append((week, met, rated, label))
        title = translate(language, "board.chart_title", clock=translate(language, f"clock.{clock}"))
        svg = Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
                     f'height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
                     f'<title>{escape(title)}</title>{"".join(parts)}</svg>')
        charts.append({"clock": clock, "title": title, "svg": svg, "weeks": table})
    return charts
