"""The policy table: the shipped file, rule resolution, regional overrides and file errors."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest
from pydantic import ValidationError

from disputeflow.domain.calendar import SHANGHAI, BusinessCalendar, OfficeHours, calendar_data_from_holidays
from disputeflow.domain.enums import Category, DisputeType, SpecialGroup, Stage, Urgency
from disputeflow.domain.policy import (
    DEFAULT_POLICY_PATH,
    BreachAction,
    CaseFacts,
    ClockRule,
    Match,
    PolicyError,
    PolicyTable,
    RegionPolicy,
    Target,
    TimeUnit,
    deadline,
    effective_clock_rules,
    load_policy,
    region_calendar_inputs,
    region_chain,
    region_income_threshold,
    resolve_case_policy,
)

SHIPPED = load_policy(DEFAULT_POLICY_PATH)
DATA_2026 = calendar_data_from_holidays(years=[2026])
CAL = BusinessCalendar(DATA_2026)

# The workflow relies on exactly these clock names, in exactly these stages.
EXPECTED_CLOCKS = {
    ("emergency_response", Stage.triage),
    ("triage_response", Stage.triage),
    ("referral_acceptance", Stage.referred),
    ("mediation_conclusion", Stage.mediation),
    ("judicial_confirmation_window", Stage.agreement),
    ("performance_check", Stage.agreement),
    ("escalation_response", Stage.escalated),
    ("legal_aid_decision", Stage.legal_aid_review),
    ("review_request_window", Stage.legal_aid_refused),
    ("refusal_review", Stage.legal_aid_reconsideration),
    ("lawyer_assignment", Stage.legal_aid_assignment),
    ("return_visit", Stage.follow_up),
    ("dissatisfaction_review", Stage.supervisor_review),
}


def facts(**overrides: object) -> CaseFacts:
    values: dict[str, object] = {"region_code": "370102", "category": Category.dispute}
    values.update(overrides)
    return CaseFacts.model_validate(values)


def rule(clock: str, amount: float, unit: TimeUnit = TimeUnit.working_days, **when: object) -> ClockRule:
    return ClockRule(
        clock=clock,
        stage=Stage.follow_up,
        title=f"{clock} {amount}",
        target=Target(amount=amount, unit=unit),
        when=Match.model_validate(when),
    )


def targets(policy: PolicyTable, case: CaseFacts, stage: Stage) -> dict[str, str]:
    resolved = resolve_case_policy(policy, case, DATA_2026)
    return {spec.clock: str(spec.target) for spec in resolved.clocks_for(stage)}


# -- the shipped file --------------------------------------------------------------------------


def test_shipped_policy_loads_with_every_clock_in_its_stage() -> None:
    assert SHIPPED.version == "2026.1"
    assert re.fullmatch(r"[0-9a-f]{12}", SHIPPED.fingerprint)
    assert {(r.clock, r.stage) for r in SHIPPED.clocks} == EXPECTED_CLOCKS
    assert all(r.source for r in SHIPPED.clocks)


def test_shipped_policy_encodes_the_deadline_table() -> None:
    normal = facts()
    assert targets(SHIPPED, normal, Stage.triage) == {"triage_response": "1 working day"}
    assert targets(SHIPPED, normal, Stage.legal_aid_review) == {"legal_aid_decision": "7 working days"}
    assert targets(SHIPPED, normal, Stage.legal_aid_assignment) == {"lawyer_assignment": "3 working days"}
    assert targets(SHIPPED, normal, Stage.legal_aid_reconsideration) == {"refusal_review": "5 working days"}
    assert targets(SHIPPED, normal, Stage.mediation) == {"mediation_conclusion": "30 calendar days"}
    assert targets(SHIPPED, normal, Stage.agreement) == {
        "judicial_confirmation_window": "30 calendar days",
        "performance_check": "45 calendar days",
    }
    assert targets(SHIPPED, normal, Stage.closed) == {}
    refused = resolve_case_policy(SHIPPED, normal, DATA_2026).clocks_for(Stage.legal_aid_refused)
    assert [(s.clock, s.warnings, s.on_breach) for s in refused] == [
        ("review_request_window", [], [BreachAction.lapse])
    ]


def test_urgent_and_emergency_cases_get_their_own_rules() -> None:
    assert targets(SHIPPED, facts(urgency=Urgency.urgent), Stage.triage) == {"triage_response": "4 working hours"}
    emergency = facts(urgency=Urgency.emergency)
    assert targets(SHIPPED, emergency, Stage.triage) == {
        "emergency_response": "1 calendar hour",
        "triage_response": "1 working day",
    }
    assert targets(SHIPPED, emergency, Stage.escalated) == {"escalation_response": "4 calendar hours"}
    assert targets(SHIPPED, facts(), Stage.escalated) == {"escalation_response": "1 working day"}


def test_shipped_legal_aid_rules() -> None:
    rules = SHIPPED.legal_aid
    assert rules.exempt_dispute_types == [DisputeType.labour_wages]
    assert SpecialGroup.disabled in rules.exempt_groups
    assert str(rules.review_request_window) == "15 calendar days"


def test_region_income_threshold_resolution() -> None:
    assert region_income_threshold(SHIPPED, "370102") == 2500  # Jinan's city-level override
    assert region_income_threshold(SHIPPED, "370202") == 2000  # Qingdao: the national default
    county = SHIPPED.model_copy(
        update={"regions": {**SHIPPED.regions, "370103": RegionPolicy(legal_aid_income_threshold=2300)}}
    )
    assert region_income_threshold(county, "370103") == 2300  # the county beats its city
    resolved = resolve_case_policy(SHIPPED, facts(region_code="370102"), DATA_2026)
    assert resolved.legal_aid.income_threshold == 2500
    assert SHIPPED.legal_aid.income_threshold == 2000  # resolving does not touch the table


def test_region_calendar_inputs_follow_the_chain() -> None:
    assert region_calendar_inputs(SHIPPED, "370102")[0] == [date(2026, 11, 5)]
    assert region_calendar_inputs(SHIPPED, "370103")[0] == []
    table = PolicyTable(
        version="t",
        clocks=[],
        regions={
            "37": RegionPolicy(extra_holidays=[date(2026, 6, 1)], extra_workdays=[date(2026, 3, 7)]),
            "370102": RegionPolicy(
                extra_workdays=[date(2026, 6, 1)],
                office_hours=[OfficeHours(start=time(8, 30), end=time(17))],
            ),
        },
    )
    off, on, hours = region_calendar_inputs(table, "370102")
    assert off == [] and on == [date(2026, 3, 7), date(2026, 6, 1)]  # the county wins on 1 June
    assert hours == [OfficeHours(start=time(8, 30), end=time(17))]
    assert region_calendar_inputs(table, "370211")[2] == table.office_hours


def test_a_local_holiday_from_the_policy_reaches_the_calendar() -> None:
    off, on, hours = region_calendar_inputs(SHIPPED, "370102")
    cal = BusinessCalendar(
        calendar_data_from_holidays(years=[2026], extra_holidays=off, extra_workdays=on, office_hours=hours)
    )
    assert not cal.is_working_day(date(2026, 11, 5))
    assert CAL.is_working_day(date(2026, 11, 5))


# -- resolution --------------------------------------------------------------------------------


def test_most_specific_rule_wins_and_ties_go_to_the_later_rule() -> None:
    table = PolicyTable(
        version="t",
        clocks=[
            rule("return_visit", 5),
            rule("return_visit", 3, special_groups=[SpecialGroup.elderly]),
            rule("return_visit", 2, special_groups=[SpecialGroup.elderly], dispute_types=[DisputeType.medical]),
            rule("return_visit", 4, urgencies=[Urgency.urgent]),
            rule("return_visit", 1, urgencies=[Urgency.urgent]),  # same specificity, later: wins
        ],
    )
    assert targets(table, facts(), Stage.follow_up) == {"return_visit": "5 working days"}
    assert targets(table, facts(special_groups=[SpecialGroup.minor, SpecialGroup.elderly]), Stage.follow_up) == {
        "return_visit": "3 working days"
    }
    elderly_medical = facts(special_groups=[SpecialGroup.elderly], dispute_type=DisputeType.medical)
    assert targets(table, elderly_medical, Stage.follow_up) == {"return_visit": "2 working days"}
    assert targets(table, facts(urgency=Urgency.urgent), Stage.follow_up) == {"return_visit": "1 working day"}


def test_a_clock_without_a_matching_rule_does_not_run() -> None:
    table = PolicyTable(version="t", clocks=[rule("return_visit", 5, categories=[Category.complaint])])
    assert targets(table, facts(category=Category.dispute), Stage.follow_up) == {}
    assert targets(table, facts(category=Category.complaint), Stage.follow_up) == {"return_visit": "5 working days"}


def test_region_rules_replace_the_base_rules_of_the_same_clock() -> None:
    table = PolicyTable(
        version="t",
        clocks=[rule("return_visit", 5), rule("return_visit", 2, urgencies=[Urgency.urgent]), rule("other_visit", 9)],
        regions={
            "37": RegionPolicy(clocks=[rule("return_visit", 4)]),
            "3701": RegionPolicy(clocks=[rule("return_visit", 3, dispute_types=[DisputeType.medical])]),
        },
    )
    # In Jinan the city's single rule is all there is for return_visit: no match, no clock; the
    # base urgent rule is gone too, while other clocks keep their base rules.
    assert targets(table, facts(urgency=Urgency.urgent), Stage.follow_up) == {"other_visit": "9 working days"}
    medical = facts(dispute_type=DisputeType.medical)
    assert targets(table, medical, Stage.follow_up) == {
        "return_visit": "3 working days",
        "other_visit": "9 working days",
    }
    # Elsewhere in Shandong the province's rule applies; outside Shandong the base rules.
    assert targets(table, facts(region_code="370202"), Stage.follow_up)["return_visit"] == "4 working days"
    assert targets(table, facts(region_code="110101", urgency=Urgency.urgent), Stage.follow_up)["return_visit"] == (
        "2 working days"
    )
    assert [r.clock for r in effective_clock_rules(table, "110101")] == ["return_visit", "return_visit", "other_visit"]


def test_region_chain_is_least_specific_first() -> None:
    table = PolicyTable(
        version="t",
        clocks=[],
        regions={
            code: RegionPolicy(legal_aid_income_threshold=n) for n, code in enumerate(["370102", "37", "3701"], 1)
        },
    )
    assert [r.legal_aid_income_threshold for r in region_chain(table, "370102")] == [2, 3, 1]
    assert region_chain(table, "110101") == []
    with pytest.raises(ValueError, match="6-digit"):
        region_chain(table, "3701")


def test_match_on_region_prefixes() -> None:
    when = Match(region_prefixes=["3701", "11"])
    assert when.specificity == 1
    assert when.matches(facts(region_code="370102")) and when.matches(facts(region_code="110101"))
    assert not when.matches(facts(region_code="370202"))
    with pytest.raises(ValidationError, match="2 \\(province\\), 4 \\(city\\) or 6 \\(county\\)"):
        Match(region_prefixes=["370"])


# -- targets -----------------------------------------------------------------------------------


def test_targets_and_their_deadlines() -> None:
    start = datetime(2026, 10, 1, 10, tzinfo=SHANGHAI)  # National Day
    assert deadline(CAL, start, Target(amount=1, unit=TimeUnit.calendar_hours)) == datetime(2026, 10, 1, 3, tzinfo=UTC)
    assert deadline(CAL, start, Target(amount=30, unit=TimeUnit.calendar_days)) == datetime(2026, 10, 31, 2, tzinfo=UTC)
    assert deadline(CAL, start, Target(amount=4, unit=TimeUnit.working_hours)) == datetime(
        2026, 10, 8, 14, 30, tzinfo=SHANGHAI
    )
    assert deadline(CAL, start, Target(amount=7, unit=TimeUnit.working_days)) == datetime(
        2026, 10, 15, 17, 30, tzinfo=SHANGHAI
    )


def test_target_validation_and_wording() -> None:
    assert str(Target(amount=7, unit=TimeUnit.working_days)) == "7 working days"
    assert str(Target(amount=1, unit=TimeUnit.calendar_hours)) == "1 calendar hour"
    assert str(Target(amount=1.5, unit=TimeUnit.working_hours)) == "1.5 working hours"
    with pytest.raises(ValidationError, match="whole number"):
        Target(amount=1.5, unit=TimeUnit.working_days)
    with pytest.raises(ValidationError, match="greater than 0"):
        Target(amount=0, unit=TimeUnit.calendar_days)


def test_clock_rule_warnings_must_be_increasing_fractions() -> None:
    base = {"clock": "x", "stage": "triage", "title": "X", "target": {"amount": 1, "unit": "working_days"}}
    assert ClockRule.model_validate(base).warnings == [0.5, 0.8]
    for bad in ([0.8, 0.5], [0.5, 0.5], [1.0], [0.0]):
        with pytest.raises(ValidationError, match="warning"):
            ClockRule.model_validate({**base, "warnings": bad})


# -- policy files ------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_invalid_policy_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    broken = text.replace(
        'clock = "legal_aid_decision"\nstage = "legal_aid_review"\ntitle = "Decide the legal-aid application"\n'
        'target = { amount = 7, unit = "working_days" }',
        'clock = "legal_aid_decision"\nstage = "legal_aid_review"\ntitle = "Decide the legal-aid application"\n'
        'target = { amount = 0, unit = "working_days" }',
    )
    assert broken != text
    path = write(tmp_path, broken)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message
    expected = r"clocks\[\d+\]\.target\.amount \(clock 'legal_aid_decision'\): .*greater than 0 \(got 0\)"
    assert re.search(expected, message)


def test_policy_file_typos_and_bad_regions_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'version = "x"\n'
        "[[clocks]]\n"
        'clock = "return_visit"\nstage = "follow_up"\ntitle = "Visit"\n'
        'target = { amount = 5, unit = "working_days" }\nwarning = [0.5]\n'
        '[regions."37a"]\nlegal_aid_income_threshold = -1\n',
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert "clocks[0].warning (clock 'return_visit'): Extra inputs are not permitted" in message
    assert "regions.37a (the key): a region code is 2 (province), 4 (city) or 6 (county) digits" in message
    assert "regions.37a.legal_aid_income_threshold: Input should be greater than 0 (got -1)" in message


def test_a_clock_name_belongs_to_one_stage(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'version = "x"\n'
        '[[clocks]]\nclock = "visit"\nstage = "follow_up"\ntitle = "V"\n'
        'target = { amount = 5, unit = "working_days" }\n'
        '[[regions."37".clocks]]\nclock = "visit"\nstage = "triage"\ntitle = "V"\n'
        'target = { amount = 5, unit = "working_days" }\n',
    )
    expected = r"clock 'visit' is in stage 'follow_up' at clocks\[0\] but in stage 'triage'"
    with pytest.raises(PolicyError, match=expected):
        load_policy(path)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(write(tmp_path, "version = \n"))
    with pytest.raises(PolicyError, match="fingerprint: remove it"):
        load_policy(write(tmp_path, 'version = "x"\nclocks = []\nfingerprint = "abc"\n'))


def test_fingerprint_follows_the_bytes(tmp_path: Path) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    assert load_policy(write(tmp_path, text)).fingerprint == SHIPPED.fingerprint
    assert load_policy(write(tmp_path, text + "\n# edited\n")).fingerprint != SHIPPED.fingerprint
    assert PolicyTable(version="t", clocks=[]).fingerprint == ""


def test_case_policy_pins_version_fingerprint_and_calendar() -> None:
    resolved = resolve_case_policy(SHIPPED, facts(), DATA_2026)
    assert (resolved.version, resolved.fingerprint) == (SHIPPED.version, SHIPPED.fingerprint)
    assert resolved.calendar == DATA_2026
    assert resolved.max_history_events == 10000
    assert type(resolved).model_validate_json(resolved.model_dump_json()) == resolved
