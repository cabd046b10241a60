"""How a forecast rates clocks: as the read model's compliance report does."""

from __future__ import annotations

from datetime import timedelta

from disputeflow.domain import lifecycle
from disputeflow.domain.clocks import ClockStatus, stop_clock
from disputeflow.forecast.report import classify
from tests.test_projection import NOW, opened_case


def test_clocks_are_rated_as_the_compliance_report_rates_them() -> None:
    state, cal = opened_case("normal")
    (triage,) = [c for c in state.clocks if c.name == "triage_response"]
    end = NOW + timedelta(days=30)
    on_time = stop_clock(triage, now=triage.due_at - timedelta(hours=1), status=ClockStatus.met)
    breached = triage.model_copy(update={"breached_at": triage.due_at, "breach_fired": True})
    late = stop_clock(breached, now=triage.due_at + timedelta(hours=5), status=ClockStatus.met)
    open_overdue = triage  # still running at the end, past its due time
    withdrawn_early = stop_clock(triage, now=triage.started_at, status=ClockStatus.cancelled)
    withdrawn_late = stop_clock(breached, now=triage.due_at + timedelta(hours=2), status=ClockStatus.cancelled)
    not_due = triage.model_copy(update={"due_at": end + timedelta(days=1)})
    f = classify([on_time, late, open_overdue, withdrawn_early, withdrawn_late, not_due], end)["triage_response"]
    assert (f.started, f.met_on_time, f.met_late, f.breached_open, f.cancelled, f.cancelled_after_breach,
            f.open_on_time) == (6, 1, 1, 1, 1, 1, 1)
    assert f.rated == 4 and f.compliance == 0.25
    assert sorted(f.late_hours)[:2] == [2.0, 5.0]
    assert lifecycle.next_alarm_at(state) is not None  # the case itself was not touched
