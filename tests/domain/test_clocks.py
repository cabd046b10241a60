"""The clock state machine: warnings and breaches, pauses, resumptions, extensions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disputeflow.domain.calendar import SHANGHAI, BusinessCalendar, calendar_data_from_holidays
from disputeflow.domain.clocks import (
    Clock,
    ClockStatus,
    due_alarms,
    extend_clock,
    mark_fired,
    next_alarm_at,
    pause_clock,
    resume_clock,
    start_clock,
    stop_clock,
)
from disputeflow.domain.enums import Category, Stage, Urgency
from disputeflow.domain.policy import (
    DEFAULT_POLICY_PATH,
    BreachAction,
    CaseFacts,
    ClockSpec,
    Target,
    TimeUnit,
    load_policy,
    resolve_case_policy,
)

CAL = BusinessCalendar(calendar_data_from_holidays(years=[2026]))


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def spec(amount: float, unit: TimeUnit, warnings: tuple[float, ...] = (0.5, 0.8)) -> ClockSpec:
    return ClockSpec(
        clock="c",
        stage=Stage.legal_aid_review,
        title="C",
        target=Target(amount=amount, unit=unit),
        warnings=list(warnings),
        on_breach=[BreachAction.notify_supervisor],
        source="",
    )


def start(amount: float, unit: TimeUnit, at: datetime, warnings: tuple[float, ...] = (0.5, 0.8)) -> Clock:
    return start_clock(spec(amount, unit, warnings), clock_id="c-1", now=at, calendar=CAL)


def fire_all(clock: Clock, now: datetime) -> tuple[Clock, list[tuple[str, float | None]]]:
    fired = []
    for alarm in due_alarms(clock, now):
        clock = mark_fired(clock, alarm, now)
        fired.append((alarm.kind, alarm.fraction))
    return clock, fired


# -- starting ----------------------------------------------------------------------------------


def test_legal_aid_clock_started_on_a_holiday() -> None:
    clock = start(7, TimeUnit.working_days, sh(2026, 10, 1, 10))
    assert clock.due_at == sh(2026, 10, 15, 17, 30)
    # The budget is 7 working days x 7 office hours = 49 h, from the opening on Thu 8 Oct.
    # 50% = 24.5 h: 8, 9 and 10 Oct (21 h), then 3.5 h on Mon 12 Oct -> 09:00-12:00 + 0.5 h = 14:00.
    # 80% = 39.2 h: five days (35 h), then 4.2 h on Wed 14 Oct -> 3 h + 1 h 12 min = 14:42.
    assert [(w.fraction, w.at) for w in clock.warnings] == [
        (0.5, sh(2026, 10, 12, 14)),
        (0.8, sh(2026, 10, 14, 14, 42)),
    ]
    assert clock.status is ClockStatus.running and clock.open and not clock.breached


def test_emergency_clock_runs_in_calendar_time_on_a_holiday_night() -> None:
    policy = resolve_case_policy(
        load_policy(DEFAULT_POLICY_PATH),
        CaseFacts(region_code="370102", category=Category.dispute, urgency=Urgency.emergency),
        CAL.data,
    )
    (emergency,) = [s for s in policy.clocks_for(Stage.triage) if s.clock == "emergency_response"]
    now = sh(2026, 10, 2, 23, 40)  # National Day holiday, late at night
    clock = start_clock(emergency, clock_id="emergency_response-1", now=now, calendar=CAL)
    assert clock.due_at == sh(2026, 10, 3, 0, 40)
    assert [w.at for w in clock.warnings] == [sh(2026, 10, 3, 0, 10)]
    assert clock.on_breach == [BreachAction.notify_supervisor, BreachAction.escalate]
    assert clock.due_at.tzinfo is UTC


# -- alarms ------------------------------------------------------------------------------------


def test_each_warning_and_the_breach_fire_exactly_once() -> None:
    # Due 14:30; warnings after 2 h (11:00) and 3.2 h (09:00-12:00 + 12 min = 13:42).
    clock = start(4, TimeUnit.working_hours, sh(2026, 3, 10, 9))
    assert clock.due_at == sh(2026, 3, 10, 14, 30)
    assert due_alarms(clock, sh(2026, 3, 10, 10, 59)) == []
    assert next_alarm_at(clock) == sh(2026, 3, 10, 11)

    clock, fired = fire_all(clock, sh(2026, 3, 10, 11))
    assert fired == [("warning", 0.5)]
    assert due_alarms(clock, sh(2026, 3, 10, 11)) == []
    assert next_alarm_at(clock) == sh(2026, 3, 10, 13, 42)

    clock, fired = fire_all(clock, sh(2026, 3, 10, 15))
    assert fired == [("warning", 0.8), ("breach", None)]
    assert clock.breached_at == sh(2026, 3, 10, 15)
    assert due_alarms(clock, sh(2026, 3, 11, 9)) == []
    assert next_alarm_at(clock) is None


def test_marking_an_alarm_twice_changes_nothing() -> None:
    clock = start(4, TimeUnit.working_hours, sh(2026, 3, 10, 9))
    alarms = due_alarms(clock, sh(2026, 3, 10, 16))
    once = clock
    for alarm in alarms:
        once = mark_fired(once, alarm, sh(2026, 3, 10, 16))
    twice = once
    for alarm in alarms:
        twice = mark_fired(twice, alarm, sh(2026, 3, 10, 17))
    assert twice == once
    assert all(w.fired_at == sh(2026, 3, 10, 16) for w in twice.warnings)


def test_an_overdue_clock_yields_its_warnings_then_its_breach() -> None:
    clock = start(7, TimeUnit.working_days, sh(2026, 10, 1, 10))
    alarms = due_alarms(clock, sh(2026, 10, 20, 9))
    assert [(a.kind, a.fraction) for a in alarms] == [("warning", 0.5), ("warning", 0.8), ("breach", None)]
    assert [a.at for a in alarms] == sorted(a.at for a in alarms)


# -- pauses ------------------------------------------------------------------------------------


def test_a_paused_clock_raises_no_alarms() -> None:
    clock = start(4, TimeUnit.working_hours, sh(2026, 3, 10, 9))
    paused = pause_clock(clock, now=sh(2026, 3, 10, 10), reason="awaiting_materials")
    assert paused.paused and paused.open
    assert due_alarms(paused, sh(2026, 3, 20, 9)) == []
    assert next_alarm_at(paused) is None
    with pytest.raises(ValueError, match="only a running clock can be paused"):
        pause_clock(paused, now=sh(2026, 3, 10, 11), reason="again")
    with pytest.raises(ValueError, match="only a paused clock can be resumed"):
        resume_clock(clock, now=sh(2026, 3, 10, 11), calendar=CAL)


def test_resume_moves_the_due_time_by_the_paused_office_hours() -> None:
    clock = start(4, TimeUnit.working_hours, sh(2026, 3, 10, 9))  # due 14:30
    paused = pause_clock(clock, now=sh(2026, 3, 10, 10), reason="awaiting_party")
    resumed = resume_clock(paused, now=sh(2026, 3, 10, 14), calendar=CAL)
    # Paused 10:00-14:00 holds 2.5 office hours (10-12, 13:30-14), so 14:30 + 2.5 h -> 17:00.
    assert resumed.due_at == sh(2026, 3, 10, 17)
    assert resumed.warnings[0].at == sh(2026, 3, 10, 15)  # was 11:00: + 1 h to noon, lunch, + 1.5 h
    assert resumed.pauses[-1].ended_at == sh(2026, 3, 10, 14)
    assert resumed.pauses[-1].shifted_by == "2 h 30 min of office hours"
    assert resumed.status is ClockStatus.running


def test_a_materials_pause_over_a_weekend_moves_a_working_day_clock_by_working_days_only() -> None:
    clock = start(7, TimeUnit.working_days, sh(2026, 3, 9, 10))
    assert clock.due_at == sh(2026, 3, 18, 17, 30)  # 10, 11, 12, 13, 16, 17, 18 March

    # Asked on Friday after closing, supplied on Monday before opening: no working day touched.
    weekend = pause_clock(clock, now=sh(2026, 3, 13, 18), reason="awaiting_materials")
    weekend = resume_clock(weekend, now=sh(2026, 3, 16, 8, 30), calendar=CAL)
    assert weekend.due_at == clock.due_at
    assert weekend.pauses[-1].shifted_by == "0 working days"

    # Asked Friday 16:00, supplied Monday 10:00: Friday and Monday are touched, two working days.
    touched = pause_clock(clock, now=sh(2026, 3, 13, 16), reason="awaiting_materials")
    touched = resume_clock(touched, now=sh(2026, 3, 16, 10), calendar=CAL)
    assert touched.due_at == sh(2026, 3, 20, 17, 30)
    assert touched.pauses[-1].shifted_by == "2 working days"


def test_a_calendar_clock_moves_by_the_paused_calendar_time() -> None:
    clock = start(30, TimeUnit.calendar_days, sh(2026, 3, 1, 10))
    paused = pause_clock(clock, now=sh(2026, 3, 5, 10), reason="awaiting_party")
    resumed = resume_clock(paused, now=sh(2026, 3, 8, 16), calendar=CAL)
    assert resumed.due_at == clock.due_at + timedelta(days=3, hours=6)
    assert resumed.pauses[-1].shifted_by == "3 d 6 h of calendar time"


def test_a_breach_is_not_repeated_by_a_pause() -> None:
    clock = start(1, TimeUnit.calendar_hours, sh(2026, 3, 10, 9), warnings=())
    clock, fired = fire_all(clock, sh(2026, 3, 10, 11))
    assert fired == [("breach", None)]
    clock = pause_clock(clock, now=sh(2026, 3, 10, 11), reason="awaiting_party")
    clock = resume_clock(clock, now=sh(2026, 3, 10, 12), calendar=CAL)
    assert clock.due_at == sh(2026, 3, 10, 11)
    assert due_alarms(clock, sh(2026, 3, 10, 13)) == []


# -- extensions and stopping -------------------------------------------------------------------


def test_extension_moves_the_due_time_and_keeps_the_breach_on_record() -> None:
    clock = start(30, TimeUnit.calendar_days, sh(2026, 3, 1, 10))
    clock, fired = fire_all(clock, sh(2026, 4, 1, 9))
    assert fired == [("warning", 0.5), ("warning", 0.8), ("breach", None)]
    first_breach = clock.breached_at

    extended = extend_clock(
        clock,
        by=Target(amount=30, unit=TimeUnit.calendar_days),
        now=sh(2026, 4, 1, 9),
        calendar=CAL,
        reason="both parties agree",
        approved_by="supervisor-7",
    )
    assert extended.due_at == sh(2026, 4, 30, 10)
    assert extended.breached_at == first_breach and extended.breached
    assert due_alarms(extended, sh(2026, 4, 2, 9)) == []  # no longer overdue
    (record,) = extended.extensions
    assert (record.previous_due_at, record.new_due_at, record.approved_by) == (
        sh(2026, 3, 31, 10),
        sh(2026, 4, 30, 10),
        "supervisor-7",
    )
    # The extended deadline can breach in its turn; the first breach stays the recorded one.
    later, fired = fire_all(extended, sh(2026, 4, 30, 11))
    assert fired == [("breach", None)]
    assert later.breached_at == first_breach


def test_extension_replaces_unfired_warnings_over_the_longer_budget() -> None:
    clock = start(30, TimeUnit.calendar_days, sh(2026, 3, 1, 0))  # warnings on 16 and 25 March
    extended = extend_clock(
        clock,
        by=Target(amount=30, unit=TimeUnit.calendar_days),
        now=sh(2026, 3, 20, 0),
        calendar=CAL,
        reason="r",
        approved_by="s",
    )
    # A 60-day budget: 50% on 31 March; 80% would be 18 April.
    assert [w.at for w in extended.warnings] == [sh(2026, 3, 31), sh(2026, 4, 18)]
    # Extended late, a passed fraction is due at once rather than in the past.
    late = extend_clock(
        clock, by=Target(amount=1, unit=TimeUnit.calendar_days), now=sh(2026, 3, 28), calendar=CAL,
        reason="r", approved_by="s",
    )
    assert [w.at for w in late.warnings] == [sh(2026, 3, 28), sh(2026, 3, 28)]


def test_stop_clock_ends_a_pause_and_the_alarms() -> None:
    clock = start(7, TimeUnit.working_days, sh(2026, 3, 9, 10))
    paused = pause_clock(clock, now=sh(2026, 3, 10, 10), reason="awaiting_materials")
    met = stop_clock(paused, now=sh(2026, 3, 11, 10), status=ClockStatus.met)
    assert met.status is ClockStatus.met and not met.open
    assert met.ended_at == met.pauses[-1].ended_at == sh(2026, 3, 11, 10)
    assert due_alarms(met, sh(2026, 4, 1)) == [] and next_alarm_at(met) is None
    with pytest.raises(ValueError, match="already ended"):
        stop_clock(met, now=sh(2026, 3, 12), status=ClockStatus.cancelled)
    with pytest.raises(ValueError, match="met or cancelled"):
        stop_clock(clock, now=sh(2026, 3, 12), status=ClockStatus.running)
    with pytest.raises(ValueError, match="only an open clock can be extended"):
        extend_clock(met, by=Target(amount=1, unit=TimeUnit.working_days), now=sh(2026, 3, 12), calendar=CAL,
                     reason="r", approved_by="s")


def test_functions_never_change_the_clock_they_are_given() -> None:
    clock = start(7, TimeUnit.working_days, sh(2026, 3, 9, 10))
    before = clock.model_dump()
    paused = pause_clock(clock, now=sh(2026, 3, 10, 10), reason="awaiting_materials")
    paused_before = paused.model_dump()
    resume_clock(paused, now=sh(2026, 3, 11, 10), calendar=CAL)
    extend_clock(clock, by=Target(amount=3, unit=TimeUnit.working_days), now=sh(2026, 3, 10), calendar=CAL,
                 reason="r", approved_by="s")
    for alarm in due_alarms(clock, sh(2026, 4, 1)):
        mark_fired(clock, alarm, sh(2026, 4, 1))
    stop_clock(clock, now=sh(2026, 3, 12), status=ClockStatus.met)
    assert clock.model_dump() == before
    assert paused.model_dump() == paused_before


# -- properties --------------------------------------------------------------------------------

BASE = sh(2026, 1, 1)
instants = st.builds(lambda minutes: BASE + timedelta(minutes=minutes), st.integers(0, 330 * 24 * 60))
targets = st.one_of(
    st.builds(lambda n: Target(amount=n, unit=TimeUnit.working_days), st.integers(1, 30)),
    st.builds(lambda h: Target(amount=h, unit=TimeUnit.working_hours), st.integers(1, 80)),
    st.builds(lambda h: Target(amount=h, unit=TimeUnit.calendar_hours), st.integers(1, 200)),
    st.builds(lambda d: Target(amount=d, unit=TimeUnit.calendar_days), st.integers(1, 60)),
)
fractions = st.lists(st.floats(0.05, 0.95), max_size=3, unique=True).map(sorted)


@settings(max_examples=150, deadline=None)
@given(target=targets, now=instants, warnings=fractions)
def test_warnings_are_in_time_order_and_before_the_due_time(
    target: Target, now: datetime, warnings: list[float]
) -> None:
    clock = start(target.amount, target.unit, now, warnings=tuple(warnings))
    times = [w.at for w in clock.warnings]
    assert times == sorted(times)
    assert all(now <= at < clock.due_at for at in times)


@settings(max_examples=150, deadline=None)
@given(
    target=targets,
    now=instants,
    pause_after=st.integers(0, 20 * 24 * 60),
    pause_for=st.integers(0, 20 * 24 * 60),
)
def test_pausing_then_resuming_never_brings_a_due_time_earlier(
    target: Target, now: datetime, pause_after: int, pause_for: int
) -> None:
    clock = start(target.amount, target.unit, now)
    paused_at = now + timedelta(minutes=pause_after)
    resumed = resume_clock(
        pause_clock(clock, now=paused_at, reason="awaiting_party"),
        now=paused_at + timedelta(minutes=pause_for),
        calendar=CAL,
    )
    assert resumed.due_at >= clock.due_at
    assert all(after.at >= before.at for before, after in zip(clock.warnings, resumed.warnings, strict=True))
    if target.unit is TimeUnit.working_days:
        local = resumed.due_at.astimezone(SHANGHAI)
        assert CAL.is_working_day(local.date()) and (local.hour, local.minute) == (17, 30)
