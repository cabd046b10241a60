"""The forecast against loads whose answer is known: one that fits and one that overflows.

One simulation, two mediator levels, the same arrivals (common random numbers): 15 wage disputes a
week for 8 weeks, every one sent to mediation, each mediator holding 1 session a working day.
Ten mediators (50 sessions a week against some 30 asked for) meet the 30-day mediation deadline;
one mediator (5 a week) cannot, and the cases pile up.
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from disputeflow.forecast import ForecastSpec, forecast, text
from disputeflow.settings import DEFAULT_POLICY_FILE


@pytest.fixture(scope="module")
def result():
    spec = ForecastSpec(
        region_code="370102", start=date(2027, 3, 1), weeks=8, runs=1, seed=7,
        arrivals=[{"category": "dispute", "dispute_type": "labour_wages", "per_week": 15}],
        staff={"mediator": {"count": 1, "per_day": 1}},
        outcomes={"dispute_to_mediation": 1.0},
        sweep={"role": "mediator", "levels": [1, 10]},
    )
    return forecast(spec, policy_file=DEFAULT_POLICY_FILE)


def _clock(result, level: int, name: str):
    lv = next(x for x in result.levels if x.level == level)
    return next(r for r in lv.clocks if r.clock == name), lv


def test_a_load_that_fits_meets_its_mediation_deadlines(result) -> None:
    row, lv = _clock(result, 10, "mediation_conclusion")
    assert row.rated >= 20 and row.compliance is not None and row.compliance >= 0.95, text(result)
    assert lv.backlog[-1].overdue_clocks.get("mediation_conclusion", 0) == 0


def test_a_load_that_overflows_misses_them_and_piles_up(result) -> None:
    row, lv = _clock(result, 1, "mediation_conclusion")
    assert row.compliance is not None and row.compliance < 0.6, text(result)
    assert row.mean_late_hours is not None and row.mean_late_hours > 0
    fits, _ = _clock(result, 10, "mediation_conclusion")
    assert row.late >= fits.late + 10, text(result)  # the missed deadlines escalate: the supervisor's queue grows
    escalations, _ = _clock(result, 1, "escalation_response")
    assert escalations.started > _clock(result, 10, "escalation_response")[0].started
    assert result.reaches_target["mediation_conclusion"] == 10
    assert result.lost == 0 and result.cases_simulated == 2 * lv.cases


def test_its_notes_carry_their_codes_and_the_console_says_them_in_chinese(result) -> None:
    """The API and the CLI say the notes in English; the console (Chinese) says each by its code."""
    from api.console.web import words_for
    from disputeflow.forecast.report import NOTE_CODES

    codes = [n.code for n in result.note_codes]
    assert len(codes) == len(result.notes) and set(codes) <= NOTE_CODES
    assert codes[:3] == ["runs", "rated", "ticks"]
    assert "shifted_earlier" in codes  # March 2027 is run on the test server's today, weeks earlier
    assert result.notes[0] == "1 run(s) per level; run r draws the same arrivals at every level"
    zh = words_for("zh").forecast_notes(result)
    assert zh[0] == "每档人数运行 1 次；同一次运行在各档人数下的来案相同"
    days = result.note_codes[codes.index("shifted_earlier")].params["days"]
    assert f"提前 {days} 天模拟" in zh[codes.index("shifted_earlier")] and days % 7 == 0 and days > 0
    assert not any(re.search(r"[A-Za-z]{3,}", note) for note in zh), zh  # not a word of English
    # The English catalogue says what the API says (a window's clock by its label, not its name).
    en = words_for("en").forecast_notes(result)
    assert [w for w, c in zip(en, codes) if c != "windows"] == [w for w, c in zip(result.notes, codes) if c != "windows"]


def test_emergencies_are_answered_at_night_too() -> None:
    """Two threats of violence, at 22:10 on a Tuesday and 03:00 on a Saturday: the operator on duty
    triages each a quarter of an hour after the call, inside its one-hour deadline."""
    spec = ForecastSpec(
        region_code="370102", start=date(2027, 3, 1), weeks=1, runs=1, seed=3,
        arrivals=[{"category": "dispute", "per_week": 0}],
        exact_arrivals=[("2027-03-02T22:10:00+08:00", "dispute", "neighbours", "emergency"),
                        ("2027-03-06T03:00:00+08:00", "dispute", "neighbours", "emergency")],
    )
    (level,) = forecast(spec, policy_file=DEFAULT_POLICY_FILE).levels
    row = next(r for r in level.clocks if r.clock == "emergency_response")
    assert (row.started, row.rated, row.compliance) == (2, 2, 1.0)
