"""Working days, 调休 makeup days, office hours and coverage of the business calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from disputeflow.domain.calendar import (
    SHANGHAI,
    BusinessCalendar,
    CalendarData,
    OfficeHours,
    calendar_data_from_holidays,
)

DATA_2026 = calendar_data_from_holidays(years=[2026])
CAL = BusinessCalendar(DATA_2026)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# -- the 2026 schedule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9), date(2026, 9, 20), date(2026, 10, 10)],
)
def test_2026_makeup_weekend_days_are_working_days(day: date) -> None:
    assert day.weekday() >= 5
    assert CAL.is_working_day(day)


@pytest.mark.parametrize(
    ("first", "last"),
    [(date(2026, 2, 15), date(2026, 2, 23)), (date(2026, 10, 1), date(2026, 10, 7))],
)
def test_2026_spring_festival_and_national_day_are_off(first: date, last: date) -> None:
    assert [d for d in days(first, last) if CAL.is_working_day(d)] == []


def test_ordinary_weeks_are_monday_to_friday() -> None:
    week = days(date(2026, 3, 9), date(2026, 3, 15))
    assert [CAL.is_working_day(d) for d in week] == [True] * 5 + [False] * 2


def test_2026_is_covered_and_a_year_without_a_published_schedule_is_not() -> None:
    assert (DATA_2026.covered_from, DATA_2026.covered_to) == (date(2026, 1, 1), date(2026, 12, 31))
    # The package will never have a State Council notice for 2099: it only extrapolates that year.
    mixed = calendar_data_from_holidays(years=[2026, 2099])
    assert (mixed.covered_from, mixed.covered_to) == (date(2026, 1, 1), date(2026, 12, 31))
    none = calendar_data_from_holidays(years=[2099])
    assert none.covered_to < none.covered_from
    assert none.holidays == [] and none.extra_workdays == []


def test_coverage_spans_consecutive_published_years() -> None:
    data = calendar_data_from_holidays(years=[2025, 2026])
    assert (data.covered_from, data.covered_to) == (date(2025, 1, 1), date(2026, 12, 31))
    cal = BusinessCalendar(data)
    assert cal.is_working_day(date(2025, 9, 28))  # Sunday made a working day in 2025
    assert not cal.is_working_day(date(2025, 10, 8))


def test_regional_extras_win_over_the_national_schedule() -> None:
    data = calendar_data_from_holidays(
        years=[2026], extra_holidays=[date(2026, 11, 5), date(2026, 2, 14)], extra_workdays=[date(2026, 3, 7)]
    )
    cal = BusinessCalendar(data)
    assert not cal.is_working_day(date(2026, 11, 5))
    assert not cal.is_working_day(date(2026, 2, 14))  # a national makeup Saturday, given off locally
    assert cal.is_working_day(date(2026, 3, 7))


def test_outside_coverage_falls_back_to_weekdays_and_reports_once_per_year() -> None:
    reported: list[date] = []
    cal = BusinessCalendar(DATA_2026, on_fallback=reported.append)
    assert cal.is_working_day(date(2027, 1, 4))
    assert not cal.is_working_day(date(2027, 1, 2))
    assert cal.is_working_day(date(2027, 3, 1))
    assert cal.is_working_day(date(2025, 12, 31))
    assert reported == [date(2027, 1, 4), date(2025, 12, 31)]


def test_outside_coverage_the_statutory_festival_days_stay_off() -> None:
    data = calendar_data_from_holidays(years=[2026, 2027])
    assert data.covered_to == date(2026, 12, 31)  # the package has no 2027 State Council notice
    cal = BusinessCalendar(data)
    for festival in (date(2027, 1, 1), date(2027, 2, 8), date(2027, 10, 1)):  # fixed by law
        assert not cal.is_working_day(festival), festival
    # the package's guessed "(observed)" substitutes are not trusted: Tue 9 Feb 2027 still works
    assert cal.is_working_day(date(2027, 2, 9))


# -- deadlines ---------------------------------------------------------------------------------


def test_legal_aid_application_received_on_a_holiday() -> None:
    # Received Thu 1 Oct 2026 (National Day). The receipt day never counts, and 2-7 Oct are off.
    # Working days: Thu 8 (1), Fri 9 (2), Sat 10 makeup (3), Mon 12 (4), Tue 13 (5), Wed 14 (6),
    # Thu 15 (7) -> close of office hours on 15 Oct, 17:30 Shanghai = 09:30 UTC.
    due = CAL.end_of_nth_working_day_after(sh(2026, 10, 1, 10), 7)
    assert due == datetime(2026, 10, 15, 9, 30, tzinfo=UTC)
    assert due.tzinfo is UTC


def test_working_day_count_does_not_include_the_receipt_day() -> None:
    assert CAL.end_of_nth_working_day_after(sh(2026, 3, 9, 8), 1) == sh(2026, 3, 10, 17, 30)
    assert CAL.end_of_nth_working_day_after(sh(2026, 3, 13, 23), 1) == sh(2026, 3, 16, 17, 30)


def test_working_hours_cross_the_lunch_break() -> None:
    assert CAL.add_working_seconds(sh(2026, 3, 10, 11), 2 * 3600) == sh(2026, 3, 10, 14, 30)
    assert CAL.working_seconds_between(sh(2026, 3, 10, 11), sh(2026, 3, 10, 14, 30)) == 2 * 3600


def test_working_hours_started_after_hours_begin_at_the_next_opening() -> None:
    # Fri 13 Mar 2026 evening -> Mon 16 Mar 09:00 + 1 h.
    assert CAL.add_working_seconds(sh(2026, 3, 13, 18), 3600) == sh(2026, 3, 16, 10)


def test_a_budget_ending_at_closing_time_ends_at_closing_time() -> None:
    assert CAL.add_working_seconds(sh(2026, 3, 10, 9), 3 * 3600) == sh(2026, 3, 10, 12)
    assert CAL.add_working_seconds(sh(2026, 3, 10, 9), CAL.working_seconds_per_day) == sh(2026, 3, 10, 17, 30)


def test_adding_nothing_returns_the_start_unchanged() -> None:
    start = sh(2026, 3, 14, 3)  # a Saturday night, outside office hours
    assert CAL.add_working_seconds(start, 0) is start


def test_inputs_in_any_zone_mean_the_same_instant() -> None:
    in_utc = datetime(2026, 3, 10, 3, tzinfo=UTC)  # 11:00 Shanghai
    assert CAL.add_working_seconds(in_utc, 2 * 3600) == sh(2026, 3, 10, 14, 30)
    assert CAL.working_seconds_between(in_utc, sh(2026, 3, 10, 12)) == 3600


def test_deadline_across_the_year_end_falls_back_and_says_so() -> None:
    reported: list[date] = []
    cal = BusinessCalendar(DATA_2026, on_fallback=reported.append)
    # Wed 30 Dec 2026 + 3 working days: Thu 31 Dec (1, covered), then 2027 is outside coverage, so
    # Mon-Fri applies: Fri 1 Jan (2: this calendar knows no 2027 festival days), Mon 4 Jan (3).
    due = cal.end_of_nth_working_day_after(sh(2026, 12, 30, 10), 3)
    assert due == sh(2027, 1, 4, 17, 30)
    assert reported == [date(2027, 1, 1)]
    # pinned with 2027 requested, New Year's Day is known to be off even without the notice
    cal = BusinessCalendar(calendar_data_from_holidays(years=[2026, 2027]))
    assert cal.end_of_nth_working_day_after(sh(2026, 12, 30, 10), 3) == sh(2027, 1, 5, 17, 30)


def test_working_days_touched_counts_partly_touched_days() -> None:
    assert CAL.working_days_touched(sh(2026, 3, 13, 16), sh(2026, 3, 16, 10)) == 2  # Fri and Mon
    assert CAL.working_days_touched(sh(2026, 3, 13, 18), sh(2026, 3, 16, 8, 30)) == 0  # the weekend only
    assert CAL.working_days_touched(sh(2026, 3, 10, 12), sh(2026, 3, 10, 13, 30)) == 0  # lunch


def test_working_seconds_per_day() -> None:
    assert CAL.working_seconds_per_day == 7 * 3600


# -- validation --------------------------------------------------------------------------------


def test_office_hours_must_be_ordered_and_not_overlap() -> None:
    with pytest.raises(ValidationError, match="end after they start"):
        OfficeHours(start=time(12), end=time(9))
    with pytest.raises(ValidationError, match="must not overlap"):
        CalendarData(
            office_hours=[OfficeHours(start=time(9), end=time(12)), OfficeHours(start=time(11), end=time(17))],
            covered_from=date(2026, 1, 1),
            covered_to=date(2026, 12, 31),
        )


def test_a_calendar_without_office_hours_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one span"):
        CalendarData(office_hours=[], covered_from=date(2026, 1, 1), covered_to=date(2026, 12, 31))
    unchecked = CalendarData.model_construct(
        holidays=[], extra_workdays=[], office_hours=[], covered_from=date(2026, 1, 1), covered_to=date(2026, 12, 31)
    )
    with pytest.raises(ValueError, match="needs office hours"):
        BusinessCalendar(unchecked)


def test_a_day_cannot_be_both_off_and_working() -> None:
    with pytest.raises(ValidationError, match="2026-03-07"):
        CalendarData(
            holidays=[date(2026, 3, 7)],
            extra_workdays=[date(2026, 3, 7)],
            covered_from=date(2026, 1, 1),
            covered_to=date(2026, 12, 31),
        )


def test_naive_datetimes_and_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add_working_seconds(datetime(2026, 3, 10, 9), 60)
    with pytest.raises(ValueError, match="at least one working day"):
        CAL.end_of_nth_working_day_after(sh(2026, 3, 10, 9), 0)
    with pytest.raises(ValueError, match=">= 0"):
        CAL.add_working_seconds(sh(2026, 3, 10, 9), -1)


def test_a_month_of_working_days_is_cheap() -> None:
    # Day-by-day iteration: 30 working days from every hour of a fortnight stays well under a second.
    start = sh(2026, 9, 14)
    for hour in range(14 * 24):
        due = CAL.end_of_nth_working_day_after(start + timedelta(hours=hour), 30)
        assert CAL.working_seconds_between(start, due) > 0


# -- properties --------------------------------------------------------------------------------

BASE = sh(2025, 12, 20)
instants = st.builds(
    lambda seconds, micros: BASE + timedelta(seconds=seconds, microseconds=micros),
    st.integers(0, 400 * 86400),
    st.integers(0, 999_999),
)


@settings(max_examples=200, deadline=None)
@given(start=instants, n=st.integers(1, 30))
def test_a_working_day_target_ends_at_close_of_office_hours_on_a_working_day(start: datetime, n: int) -> None:
    due = CAL.end_of_nth_working_day_after(start, n).astimezone(SHANGHAI)
    assert CAL.is_working_day(due.date())
    assert due.time() == time(17, 30)
    assert due.date() > start.date()
    assert CAL.working_seconds_between(start, due) >= (n - 1) * CAL.working_seconds_per_day


@settings(max_examples=200, deadline=None)
@given(start=instants, micros=st.integers(0, 40 * 7 * 3600 * 10**6))
def test_add_working_seconds_is_inverted_by_working_seconds_between(start: datetime, micros: int) -> None:
    seconds = micros / 1e6
    end = CAL.add_working_seconds(start, seconds)
    assert end >= start
    assert CAL.working_seconds_between(start, end) == seconds
    # ...and it is the earliest such instant: any earlier instant has less working time behind it.
    if seconds > 0:
        assert CAL.working_seconds_between(start, end - timedelta(microseconds=1)) < seconds


@settings(max_examples=200, deadline=None)
@given(start=instants, span=st.integers(0, 40 * 86400 * 10**6))
def test_working_seconds_between_is_inverted_by_add_working_seconds(start: datetime, span: int) -> None:
    end = start + timedelta(microseconds=span)
    seconds = CAL.working_seconds_between(start, end)
    back = CAL.add_working_seconds(start, seconds)
    # The earliest instant with that much working time: `end` itself, or the last close before it.
    assert back <= end
    assert CAL.working_seconds_between(back, end) == 0
    assert CAL.working_seconds_between(start, back) == seconds
