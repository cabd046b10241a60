"""The compliance charts, drawn on the server as SVG: no charting library, nothing to load.

One small chart per clock: a bar per ISO week, as high as that week's compliance rate (met on
time over everything rated), grey where nothing could be rated yet. The numbers are also in the
table the board prints beside it, for anyone who does not see the chart. A forecast's chart is per
clock too: compliance against staffing level (`forecast_svg`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from markupsafe import Markup, escape

from api.console.web import translate
from disputeflow.db.reports import ComplianceRow

if TYPE_CHECKING:
    from disputeflow.forecast.report import Forecast

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


# -- A forecast: compliance against staffing level --------------------------------------------------

F_WIDTH, F_HEIGHT, F_LEFT, F_BOTTOM = 360, 170, 34, 30


def forecast_svg(result: Forecast, language: str) -> list[dict[str, object]]:
    """[{clock, title, svg, rows}] per clock of a forecast (windows that lapse by design left out):
    a bar per staffing level as high as its forecast compliance (mean over the runs), a whisker
    from the lowest run to the highest, the target as a dashed line; `rows` are the same figures
    for the table beside it: (level, compliance, low-high, rated, late, mean late h, p90 late h)."""
    from disputeflow.forecast.report import ClockForecast

    target = result.target
    levels = result.levels
    charts = []
    for clock in result.reaches_target:
        n = max(1, len(levels))
        plot_w, plot_h = F_WIDTH - F_LEFT - 8, F_HEIGHT - F_BOTTOM - 12
        slot = plot_w / n
        bar = min(40.0, slot * 0.6)

        def y(rate: float) -> float:
            return 12 + plot_h * (1 - rate)

        parts = [f'<line class="axis" x1="{F_LEFT}" y1="{y(0):.1f}" x2="{F_WIDTH - 8}" y2="{y(0):.1f}"/>']
        for tick in (0.0, 0.5, 1.0):
            parts.append(f'<text class="bar-label" x="{F_LEFT - 4}" y="{y(tick) + 3:.1f}" text-anchor="end">'
                         f'{tick:.0%}</text>')
        rows = []
        for i, lv in enumerate(levels):
            row = next((r for r in lv.clocks if r.clock == clock), None) or ClockForecast(
                clock=clock, compliance=None, compliance_low=None, compliance_high=None, rated=0, started=0, late=0,
                mean_late_hours=None, p90_late_hours=None)
            rate = row.compliance
            cx = F_LEFT + slot * (i + 0.5)
            x = cx - bar / 2
            top = y(rate if rate is not None else 1.0)
            css = ("bar-none" if rate is None else "bar-good" if rate >= target
                   else "bar-warn" if rate >= target - 0.15 else "bar-bad")
            label = "—" if rate is None else f"{rate:.0%}"
            parts.append(f'<rect class="{css}" x="{x:.1f}" y="{top:.1f}" width="{bar:.1f}" height="{y(0) - top:.1f}"/>')
            if row.compliance_low is not None and row.compliance_high is not None and \
                    row.compliance_high > row.compliance_low:
                parts.append(f'<line class="whisker" x1="{cx:.1f}" y1="{y(row.compliance_high):.1f}" x2="{cx:.1f}" '
                             f'y2="{y(row.compliance_low):.1f}"/>')
            parts.append(f'<text class="bar-value" x="{cx:.1f}" y="{max(top - 3, 10):.1f}" text-anchor="middle">'
                         f'{escape(label)}</text>'
                         f'<text class="bar-label" x="{cx:.1f}" y="{F_HEIGHT - F_BOTTOM + 14}" text-anchor="middle">'
                         f'{lv.level}</text>')
            spread = ("—" if row.compliance_low is None or row.compliance_high is None
                      else f"{row.compliance_low:.0%}–{row.compliance_high:.0%}")
            rows.append((lv.level, label, spread, f"{row.rated:.1f}", f"{row.late:.1f}",
                         "—" if row.mean_late_hours is None else f"{row.mean_late_hours:.1f}",
                         "—" if row.p90_late_hours is None else f"{row.p90_late_hours:.1f}"))
        parts.append(f'<line class="target" x1="{F_LEFT}" y1="{y(target):.1f}" x2="{F_WIDTH - 8}" y2="{y(target):.1f}"/>')
        role = translate(language, f"role.{result.role}")
        parts.append(f'<text class="bar-label" x="{F_LEFT + plot_w / 2:.1f}" y="{F_HEIGHT - 4}" text-anchor="middle">'
                     f'{escape(translate(language, "forecast.axis_level", role=role))}</text>')
        name = translate(language, f"clock.{clock}")
        title = translate(language, "forecast.chart_title", clock=name, role=role, target=f"{target:.0%}")
        svg = Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {F_WIDTH} {F_HEIGHT}" width="{F_WIDTH}" '
                     f'height="{F_HEIGHT}" role="img" aria-label="{escape(title)}" data-clock="{escape(clock)}">'
                     f'<title>{escape(title)}</title>{"".join(parts)}</svg>')
        charts.append({"clock": clock, "name": name, "title": title, "svg": svg, "rows": rows,
                       "reaches": result.reaches_target.get(clock)})
    return charts
