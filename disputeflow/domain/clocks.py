"""SLA clocks as plain state, driven by the workflow's durable timers.

The workflow sleeps until `next_alarm_at`, asks `due_alarms`, acts on each and records it with
`mark_fired`; pauses, resumptions and extensions move the due time. Every function here is pure:
it returns a new `Clock` and never changes the one it was given, so the workflow's history alone
decides a clock's state and replays to the same result.

A clock measures time in its own metric: calendar seconds for calendar units, office-hours
seconds for working units. Warnings, pauses and extensions are all measured in that metric, so a
pause over a weekend costs a working-day clock nothing while it costs a calendar clock two days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.enums import Stage
from disputeflow.domain.policy import BreachAction, ClockSpec, Target, TimeUnit, deadline


class ClockStatus(StrEnum):
    running = "running"
    paused = "paused"
    met = "met"
    cancelled = "cancelled"


class ClockWarning(BaseModel):
    fraction: float  # of the clock's budget elapsed when the warning is due
    at: datetime
    fired_at: datetime | None = None


class ClockPause(BaseModel):
    reason: str
    started_at: datetime
    ended_at: datetime | None = None
    shifted_by: str = ""  # how far the due time moved, in words, once the pause ends


class ClockExtension(BaseModel):
    by: Target
    reason: str
    approved_by: str
    at: datetime
    previous_due_at: datetime
    new_due_at: datetime


class Clock(BaseModel):
    clock_id: str
    name: str
    title: str
    stage: Stage
    target: Target
    on_breach: list[BreachAction]
    source: str
    started_at: datetime
    due_at: datetime
    warnings: list[ClockWarning]
    status: ClockStatus = ClockStatus.running
    breached_at: datetime | None = None  # the first breach; kept when a later extension lifts it
    # Whether the breach of the *current* due time has fired. An extension re-arms it, so the
    # extended deadline can breach in turn; a pause does not (the same breach, merely re-dated).
    breach_fired: bool = False
    ended_at: datetime | None = None
    pauses: list[ClockPause] = Field(default_factory=list)
    extensions: list[ClockExtension] = Field(default_factory=list)

    @property
    def paused(self) -> bool:
        return self.status is ClockStatus.paused

    @property
    def breached(self) -> bool:
        """Whether the clock has ever breached; an extension does not erase that."""
        return self.breached_at is not None

    @property
    def open(self) -> bool:
        return self.status in (ClockStatus.running, ClockStatus.paused)


class Alarm(BaseModel):
    clock_id: str
    kind: Literal["warning", "breach"]
    fraction: float | None  # the warning's fraction; None for a breach
    at: datetime  # when it was due: the warning's time, or the due time for a breach


def start_clock(spec: ClockSpec, *, clock_id: str, now: datetime, calendar: BusinessCalendar) -> Clock:
    """Start a clock at `now`; warning f falls where fraction f of the budget has elapsed."""
    now = _utc(now)
    due = deadline(calendar, now, spec.target)
    unit = spec.target.unit
    budget = _measure(calendar, unit, now, due)
    return Clock(
        clock_id=clock_id,
        name=spec.clock,
        title=spec.title,
        stage=spec.stage,
        target=spec.target,
        on_breach=list(spec.on_breach),
        source=spec.source,
        started_at=now,
        due_at=due,
        warnings=[
            ClockWarning(fraction=fraction, at=_advance(calendar, unit, now, fraction * budget))
            for fraction in spec.warnings
        ],
    )


def pause_clock(clock: Clock, *, now: datetime, reason: str) -> Clock:
    """Stop the clock counting, e.g. while an applicant supplies missing materials."""
    if clock.status is not ClockStatus.running:
        raise ValueError(f"clock {clock.clock_id} is {clock.status.value}; only a running clock can be paused")
    now = _utc(now)
    return _updated(clock, status=ClockStatus.paused, pauses=[*clock.pauses, ClockPause(reason=reason, started_at=now)])


def resume_clock(clock: Clock, *, now: datetime, calendar: BusinessCalendar) -> Clock:
    """Restart a paused clock; its due time and unfired warnings move later by the paused time.

    The paused time is measured in the clock's metric: calendar time for calendar units, office
    hours for working_hours, and for working_days the working days the pause touched, a partly
    touched day counting whole (the statute counts days, and time supplying materials "is not
    counted"), so the due time stays at a close of office hours. Nothing ever moves earlier.
    """
    if clock.status is not ClockStatus.paused:
        raise ValueError(f"clock {clock.clock_id} is {clock.status.value}; only a paused clock can be resumed")
    now = _utc(now)
    pause = clock.pauses[-1]
    if now < pause.started_at:
        raise ValueError(
            f"clock {clock.clock_id} cannot resume at {now.isoformat()}, before its pause began "
            f"at {pause.started_at.isoformat()}"
        )
    unit = clock.target.unit
    if unit is TimeUnit.working_days:
        days = calendar.working_days_touched(pause.started_at, now)
        due = calendar.end_of_nth_working_day_after(clock.due_at, days) if days else clock.due_at
        shift_seconds = days * calendar.working_seconds_per_day
        shifted_by = f"{days} working day{'' if days == 1 else 's'}"
    else:
        shift_seconds = _measure(calendar, unit, pause.started_at, now)
        due = _advance(calendar, unit, clock.due_at, shift_seconds)
        kind = "of office hours" if unit.is_working_time else "of calendar time"
        shifted_by = f"{_describe(timedelta(seconds=shift_seconds))} {kind}"
    warnings = [
        w if w.fired_at is not None else w.model_copy(update={"at": _advance(calendar, unit, w.at, shift_seconds)})
        for w in clock.warnings
    ]
    ended = pause.model_copy(update={"ended_at": now, "shifted_by": shifted_by})
    return _updated(
        clock, status=ClockStatus.running, due_at=due, warnings=warnings, pauses=[*clock.pauses[:-1], ended]
    )


def extend_clock(
    clock: Clock, *, by: Target, now: datetime, calendar: BusinessCalendar, reason: str, approved_by: str
) -> Clock:
    """Move an open clock's due time later by `by`, counted from the current due time.

    A breached clock can be extended: it is no longer overdue and its extended deadline can breach
    again, but `breached_at` keeps the first breach. Unfired warnings are re-placed over the longer
    budget: with the budget B grown by D (both in the clock's metric), warning f moves from
    (1 - f)·B before the due time to (1 - f)·(B + D) before the new one, i.e. later by f·D; that
    needs neither the start nor the pauses. None lands before `now`: a passed fraction is due now.
    """
    if not clock.open:
        raise ValueError(f"clock {clock.clock_id} is {clock.status.value}; only an open clock can be extended")
    now = _utc(now)
    unit = clock.target.unit
    due = deadline(calendar, clock.due_at, by)
    growth = _measure(calendar, unit, clock.due_at, due)
    warnings = [
        w
        if w.fired_at is not None
        else w.model_copy(update={"at": max(_advance(calendar, unit, w.at, w.fraction * growth), now)})
        for w in clock.warnings
    ]
    extension = ClockExtension(
        by=by, reason=reason, approved_by=approved_by, at=now, previous_due_at=clock.due_at, new_due_at=due
    )
    return _updated(
        clock, due_at=due, warnings=warnings, breach_fired=False, extensions=[*clock.extensions, extension]
    )


def stop_clock(clock: Clock, *, now: datetime, status: ClockStatus) -> Clock:
    """End an open clock as met or cancelled; a pause in progress ends with it."""
    if status not in (ClockStatus.met, ClockStatus.cancelled):
        raise ValueError(f"a clock stops as met or cancelled, not {status.value}")
    if not clock.open:
        raise ValueError(f"clock {clock.clock_id} has already ended as {clock.status.value}")
    now = _utc(now)
    pauses = list(clock.pauses)
    if clock.paused:
        pauses[-1] = pauses[-1].model_copy(update={"ended_at": now, "shifted_by": f"not resumed: clock {status.value}"})
    return _updated(clock, status=status, ended_at=now, pauses=pauses)


def due_alarms(clock: Clock, now: datetime) -> list[Alarm]:
    """Alarms of a running clock that are due at `now` and not yet fired: warnings, then the breach.

    A clock that was overdue before anyone looked yields its passed warnings and then its breach,
    each once (after `mark_fired`), so a late timer never turns into an alert storm.
    """
    if clock.status is not ClockStatus.running:
        return []
    now = _utc(now)
    alarms = [
        Alarm(clock_id=clock.clock_id, kind="warning", fraction=w.fraction, at=w.at)
        for w in sorted(clock.warnings, key=lambda w: w.at)
        if w.fired_at is None and w.at <= now
    ]
    if not clock.breach_fired and clock.due_at <= now:
        alarms.append(Alarm(clock_id=clock.clock_id, kind="breach", fraction=None, at=clock.due_at))
    return alarms


def mark_fired(clock: Clock, alarm: Alarm, now: datetime) -> Clock:
    """Record that `alarm` was acted on. Marking again, or an alarm whose time has since moved
    (the clock was extended or resumed meanwhile), changes nothing."""
    if alarm.clock_id != clock.clock_id:
        raise ValueError(f"alarm of clock {alarm.clock_id} cannot be marked on clock {clock.clock_id}")
    now = _utc(now)
    if alarm.kind == "breach":
        if clock.breach_fired or alarm.at != clock.due_at:
            return _updated(clock)
        return _updated(clock, breach_fired=True, breached_at=clock.breached_at or now)
    warnings = list(clock.warnings)
    for index, warning in enumerate(warnings):
        if warning.fired_at is None and warning.fraction == alarm.fraction and warning.at == alarm.at:
            warnings[index] = warning.model_copy(update={"fired_at": now})
            return _updated(clock, warnings=warnings)
    return _updated(clock)


def next_alarm_at(clock: Clock) -> datetime | None:
    """When the workflow's timer for this clock should next wake; None unless it is running."""
    if clock.status is not ClockStatus.running:
        return None
    pending = [w.at for w in clock.warnings if w.fired_at is None]
    if not clock.breach_fired:
        pending.append(clock.due_at)
    return min(pending, default=None)


def _measure(calendar: BusinessCalendar, unit: TimeUnit, start: datetime, end: datetime) -> float:
    """Seconds from start to end in the clock's metric."""
    if unit.is_working_time:
        return calendar.working_seconds_between(start, end)
    return max((end - start).total_seconds(), 0.0)


def _advance(calendar: BusinessCalendar, unit: TimeUnit, start: datetime, seconds: float) -> datetime:
    """The instant `seconds` later than start in the clock's metric, in UTC."""
    if unit.is_working_time:
        return calendar.add_working_seconds(start, seconds).astimezone(UTC)
    return (start + timedelta(seconds=seconds)).astimezone(UTC)


def _updated(clock: Clock, **changes: object) -> Clock:
    # Deep-copied after the update, so the result shares no list or item with the caller's clock.
    return clock.model_copy(update=changes).model_copy(deep=True)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"clock times must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _describe(span: timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{value} {unit}" for value, unit in ((days, "d"), (hours, "h"), (minutes, "min")) if value]
    return " ".join(parts) or "0 min"
