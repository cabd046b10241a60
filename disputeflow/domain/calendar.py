"""Working days and office hours in Asia/Shanghai, with the State Council's yearly schedule.

A hotline's deadlines count working days and office hours, and China's schedule moves weekend days
into working days (调休) around every long holiday, which a plain Mon–Fri rule gets wrong. The
schedule is captured once, outside workflows, as a `CalendarData` value (`calendar_data_from_holidays`)
and pinned with the case; `BusinessCalendar` then does all arithmetic on that value alone: no I/O,
no clock reads, so it is safe inside the Temporal workflow sandbox and replays identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from itertools import pairwise
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

# China has observed no daylight-saving time since 1991, so a fixed +08:00 offset is exact for every
# instant this system handles; unlike ZoneInfo("Asia/Shanghai") it needs no tzdata file read, which
# the Temporal workflow sandbox would have to allow.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


class OfficeHours(BaseModel, frozen=True):
    """One span of a working day when the office is staffed, local Shanghai time."""

    start: time
    end: time

    @model_validator(mode="after")
    def _start_before_end(self) -> OfficeHours:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("office hours are local Shanghai times, without a time zone")
        if not self.start < self.end:
            raise ValueError(f"office hours must end after they start, got {self}")
        return self

    def __str__(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


def _check_office_hours(spans: list[OfficeHours]) -> list[OfficeHours]:
    if not spans:
        raise ValueError("at least one span of office hours is needed, or no working time ever passes")
    for earlier, later in pairwise(spans):
        if later.start < earlier.end:
            raise ValueError(
                f"office hours must be in order and must not overlap: {earlier} is followed by {later}"
            )
    return spans


OfficeHoursList = Annotated[list[OfficeHours], AfterValidator(_check_office_hours)]
"""Non-empty, sorted, non-overlapping spans; the validation every office-hours setting shares."""

DEFAULT_OFFICE_HOURS: tuple[OfficeHours, ...] = (
    OfficeHours(start=time(9, 0), end=time(12, 0)),
    OfficeHours(start=time(13, 30), end=time(17, 30)),
)


class CalendarData(BaseModel, frozen=True):
    """Everything `BusinessCalendar` needs, as plain data a case can pin and a workflow can replay.

    Days in [covered_from, covered_to] follow `holidays` and `extra_workdays`; days outside it
    fall back to Mon–Fri less `statutory_days_outside_coverage`, because no official schedule is
    known for them yet.
    """

    holidays: list[date] = Field(default_factory=list)  # days off, substituted days off included
    extra_workdays: list[date] = Field(default_factory=list)  # weekend days made working days (调休)
    # The festival days themselves (New Year's Day, Spring Festival, National Day...) are fixed by
    # law (全国年节及纪念日放假办法) years ahead; only the State Council's arrangement around them
    # (substitute days off, makeup working weekends) is announced late. Outside coverage these
    # days are still off, so a 2027 deadline does not fall on 1 January.
    statutory_days_outside_coverage: list[date] = Field(default_factory=list)
    office_hours: OfficeHoursList = Field(default_factory=lambda: list(DEFAULT_OFFICE_HOURS))
    covered_from: date
    covered_to: date  # inclusive; covered_to < covered_from means nothing is covered

    @field_validator("holidays", "extra_workdays", "statutory_days_outside_coverage")
    @classmethod
    def _sorted_unique(cls, days: list[date]) -> list[date]:
        # A canonical order makes equal calendars serialise identically in pinned case state.
        return sorted(set(days))

    @model_validator(mode="after")
    def _no_day_both_off_and_working(self) -> CalendarData:
        both = sorted(set(self.holidays) & set(self.extra_workdays))
        if both:
            listed = ", ".join(d.isoformat() for d in both)
            raise ValueError(f"days listed both as holidays and as extra working days: {listed}")
        return self


def calendar_data_from_holidays(
    *,
    years: Iterable[int],
    extra_holidays: Iterable[date] = (),
    extra_workdays: Iterable[date] = (),
    office_hours: Iterable[OfficeHours] | None = None,
) -> CalendarData:
    """Capture the national schedule for `years` from the `holidays` package, plus regional extras.

    Call this outside workflows (worker start, an activity, the CLI): it is the one place that
    imports `holidays`. Coverage: the package transcribes each year's State Council notice
    (国务院办公厅关于部分节假日安排的通知) into `China.special_public_holidays`, keyed by year; for a
    year missing there it only knows the fixed-date festivals and guesses Monday substitutes, which
    is wrong for China (no 调休 makeup days at all). So only requested years with an entry there
    count as covered, and coverage is their longest run of consecutive years (the latest run on a
    tie), because a gap year inside the range would silently use guesses. Regional extras win over
    the national schedule on the same day.
    """
    import holidays  # noqa: PLC0415 - kept out of module import so workflows never load it

    requested = sorted(set(years))
    if not requested:
        raise ValueError("name at least one year for the calendar")
    extra_off, extra_on = set(extra_holidays), set(extra_workdays)
    if clash := sorted(extra_off & extra_on):
        raise ValueError(f"days listed both as extra holidays and extra working days: {clash}")

    china = holidays.China(years=requested)
    published = set(getattr(china, "special_public_holidays", {}))
    covered = _latest_longest_run([year for year in requested if year in published])
    if covered:
        covered_from, covered_to = date(covered[0], 1, 1), date(covered[-1], 12, 31)
    else:
        covered_from = date(requested[0], 1, 1)
        covered_to = covered_from - timedelta(days=1)

    def in_coverage(day: date) -> bool:
        return covered_from <= day <= covered_to

    national_off = {day for day in china if in_coverage(day)}
    # Outside coverage keep only the festival days the law fixes, not the package's guessed
    # "(observed)" substitutes.
    statutory = {day for day, name in china.items()
                 if not in_coverage(day) and "observed" not in name and "substituted" not in name}
    # weekend_workdays is built from every year's notice, so a December makeup day announced in
    # the following year's notice is included too.
    national_on = {day for day in china.weekend_workdays if in_coverage(day)}
    return CalendarData(
        holidays=sorted((national_off - extra_on) | extra_off),
        extra_workdays=sorted((national_on - extra_off) | extra_on),
        office_hours=list(office_hours) if office_hours is not None else list(DEFAULT_OFFICE_HOURS),
        covered_from=covered_from,
        covered_to=covered_to,
        statutory_days_outside_coverage=sorted(statutory - extra_on),
    )


def _latest_longest_run(years: list[int]) -> list[int]:
    runs: list[list[int]] = []
    for year in years:
        if runs and runs[-1][-1] == year - 1:
            runs[-1].append(year)
        else:
            runs.append([year])
    return max(reversed(runs), key=len, default=[])


class BusinessCalendar:
    """Working-day and office-hour arithmetic over one `CalendarData`.

    Every method iterates whole days, never minutes, so a month-long deadline costs a few dozen
    steps. Inputs are aware datetimes in any zone; computed instants come back in UTC.
    """

    def __init__(self, data: CalendarData, *, on_fallback: Callable[[date], None] | None = None) -> None:
        """`on_fallback(day)` is told, once per year, that a day outside coverage used the fallback."""
        spans = tuple((span.start, span.end) for span in data.office_hours)
        if not spans:
            # CalendarData validates this; model_construct can bypass it, and every loop below would
            # then search for working time forever.
            raise ValueError("a business calendar needs office hours")
        self.data = data
        self._spans = spans
        self._holidays = frozenset(data.holidays)
        self._extra_workdays = frozenset(data.extra_workdays)
        self._statutory_outside = frozenset(data.statutory_days_outside_coverage)
        self._per_day = sum(
            (datetime.combine(date.min, end) - datetime.combine(date.min, start) for start, end in spans),
            timedelta(),
        )
        self._on_fallback = on_fallback
        self._fallback_years_reported: set[int] = set()

    @property
    def working_seconds_per_day(self) -> float:
        return self._per_day.total_seconds()

    def is_working_day(self, day: date) -> bool:
        data = self.data
        if data.covered_from <= day <= data.covered_to:
            if day in self._extra_workdays:
                return True
            return day.weekday() < 5 and day not in self._holidays
        if self._on_fallback is not None and day.year not in self._fallback_years_reported:
            self._fallback_years_reported.add(day.year)
            self._on_fallback(day)
        return day.weekday() < 5 and day not in self._statutory_outside

    def working_seconds_between(self, start: datetime, end: datetime) -> float:
        """Office-hours seconds in [start, end); 0 when end <= start."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        if end <= start:
            return 0.0
        total = timedelta()
        for day in _days(start.astimezone(SHANGHAI).date(), end.astimezone(SHANGHAI).date()):
            for opens, closes in self._office_periods(day):
                low, high = max(opens, start), min(closes, end)
                if low < high:
                    total += high - low
        return total.total_seconds()

    def add_working_seconds(self, start: datetime, seconds: float) -> datetime:
        """The earliest instant t >= start with `working_seconds_between(start, t) == seconds`.

        Earliest, so a budget that runs out exactly at a closing time ends at that closing time,
        not at the next opening. `seconds == 0` returns `start` itself (no conversion to UTC).
        """
        _require_aware(start, "start")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"working seconds to add must be a finite number >= 0, got {seconds}")
        remaining = timedelta(seconds=seconds)
        if remaining == timedelta():
            return start
        day = start.astimezone(SHANGHAI).date()
        while True:
            for opens, closes in self._office_periods(day):
                low = max(opens, start)
                if low >= closes:
                    continue
                available = closes - low
                if remaining <= available:
                    return (low + remaining).astimezone(UTC)
                remaining -= available
            day += timedelta(days=1)

    def end_of_nth_working_day_after(self, start: datetime, n: int) -> datetime:
        """Close of office hours on the n-th working day strictly after start's local date.

        Statutory periods in days do not count the day of receipt (期间开始的日不计算在内), and a
        start on a non-working day simply counts from the next working day.
        """
        _require_aware(start, "start")
        if n < 1:
            raise ValueError(f"count at least one working day, got {n}")
        day = start.astimezone(SHANGHAI).date()
        counted = 0
        while counted < n:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return _local(day, self._spans[-1][1]).astimezone(UTC)

    def working_days_touched(self, start: datetime, end: datetime) -> int:
        """How many working days have office hours overlapping [start, end), partly or wholly."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        if end <= start:
            return 0
        touched = 0
        for day in _days(start.astimezone(SHANGHAI).date(), end.astimezone(SHANGHAI).date()):
            if any(max(opens, start) < min(closes, end) for opens, closes in self._office_periods(day)):
                touched += 1
        return touched

    def _office_periods(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.is_working_day(day):
            return []
        return [(_local(day, opens), _local(day, closes)) for opens, closes in self._spans]


def _local(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=SHANGHAI)


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}")
