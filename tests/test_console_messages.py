"""The console's message catalogue: Chinese and English say the same things, and every message a
template, an action form or an enum asks for is in both (a missing one would show its key)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.console.forms import fields_of
from api.console.web import catalogue
from disputeflow.domain.actions import COMMAND_TYPES
from disputeflow.domain.enums import Category, Channel, DisputeType, Role, SpecialGroup, Stage, Urgency

TEMPLATES = Path(__file__).resolve().parents[1] / "api" / "console" / "templates"


def test_both_languages_have_the_same_messages() -> None:
    assert set(catalogue("zh")) == set(catalogue("en"))
    assert all(catalogue("zh").values()) and all(catalogue("en").values())


def _keys_in_templates() -> set[str]:
    found = set()
    for template in TEMPLATES.glob("*.html"):
        found |= {k for k in re.findall(r"\bt\('([a-z_.]+)'", template.read_text(encoding="utf-8")) if not k.endswith(('.', '_'))}
    return found


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_message_the_pages_ask_for_exists(language: str) -> None:
    messages = catalogue(language)
    wanted = _keys_in_templates()
    wanted |= {f"action.{kind}" for kind in COMMAND_TYPES}
    wanted |= {f"field.{f.leaf}" for command in COMMAND_TYPES.values() for f in fields_of(command)}
    wanted |= {f"{f.leaf}.{o}" for command in COMMAND_TYPES.values() for f in fields_of(command) for o in f.options or []}
    for kind, values in (("stage", Stage), ("role", Role), ("channel", Channel), ("category", Category),
                         ("dispute_type", DisputeType), ("urgency", Urgency), ("special_groups", SpecialGroup)):
        wanted |= {f"{kind}.{v.value}" for v in values}
    missing = sorted(k for k in wanted if k not in messages)
    assert missing == []
    assert len(wanted) > 150  # the check looked at the pages' messages, not at nothing


# -- The domain's words --------------------------------------------------------------------------


def _domain_keys() -> set[str]:
    """Every key the console words the domain's English by: a new command, task, refusal, clock,
    stage or timeline kind without its message fails here, in both languages."""
    from api.errors import API_REFUSAL_CODES
    from disputeflow.domain.clocks import ClockStatus
    from disputeflow.domain.policy import DEFAULT_POLICY_PATH, load_policy
    from disputeflow.domain.process.command import REFUSAL_CODES
    from disputeflow.domain.process.tasks import TASK_TITLES
    from disputeflow.forecast.report import NOTE_CODES
    from disputeflow.history import TIMELINE_KINDS

    keys = {f"action.{kind}" for kind in COMMAND_TYPES} | {f"did.{kind}" for kind in COMMAND_TYPES}
    keys |= {f"task.{key}" for key in TASK_TITLES}
    keys |= {f"refusal.{code}" for code in REFUSAL_CODES | API_REFUSAL_CODES}
    keys |= {f"clock.{rule.clock}" for rule in load_policy(DEFAULT_POLICY_PATH).clocks}
    keys |= {f"clock_status.{s.value}" for s in ClockStatus} | {f"stage.{s.value}" for s in Stage}
    keys |= {f"story.{kind}" for kind in TIMELINE_KINDS if kind != "action"}
    keys |= {f"forecast.note.{code}" for code in NOTE_CODES}
    return keys


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_domain_key_has_a_message(language: str) -> None:
    wanted = _domain_keys()
    assert len(wanted) > 120
    assert sorted(k for k in wanted if k not in catalogue(language)) == []


def test_the_timeline_kinds_are_the_ones_the_history_writes() -> None:
    from disputeflow.history import TIMELINE_KINDS

    source = (Path(__file__).resolve().parents[1] / "disputeflow" / "history.py").read_text(encoding="utf-8")
    assert set(re.findall(r'self\._add\(event, "([a-z_]+)"', source)) == set(TIMELINE_KINDS)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_each_did_names_only_its_commands_fields(language: str) -> None:
    import string

    for kind, command in COMMAND_TYPES.items():
        named = {name for _, name, _, _ in string.Formatter().parse(catalogue(language)[f"did.{kind}"]) if name}
        assert named <= set(command.model_fields) - {"id_number"}, (kind, named)  # never the caller's data


def test_refusals_carry_their_code_and_the_console_words_them() -> None:
    from api.console.web import words_for
    from api.errors import TransitionRefused
    from disputeflow.domain import lifecycle
    from disputeflow.domain.actions import Actor
    from disputeflow.domain.process.command import Refused

    with pytest.raises(TypeError):
        Refused("no code")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Refused("unknown", code="no_such_code")
    actor = Actor(user_id="op-1", role=Role.operator, region_code="370102")
    command = COMMAND_TYPES["record_mediation_session"]
    with pytest.raises(Refused) as refused:
        lifecycle._check_door("370102-20261202-0001", False, Stage.triage, None, "370102", command, actor)
    assert refused.value.code == "role_not_allowed"
    said = TransitionRefused(str(refused.value), code=refused.value.code, params=refused.value.params)
    zh = words_for("zh").refusal(said)
    assert zh == "接线员不能办理「记录调解情况」；须由以下角色办理：调解员、督办人员。"
    assert words_for("en").refusal(said) == ("Record a mediation session: not for the role Operator; it needs one of: "
                                             "Mediator, Supervisor.")
    assert words_for("zh").refusal(TransitionRefused("legacy words")) == "legacy words"  # no code: the API's words


def test_a_forecasts_notes_are_said_by_their_codes() -> None:
    """Each note of a forecast by its code and values, in the console's language; a result without
    codes keeps the API's English."""
    from api.console.web import words_for
    from disputeflow.forecast.report import Forecast, NoteCode

    coded = [("windows", {"clock": ["judicial_confirmation_window", "review_request_window"]}, "windows..."),
             ("shifted_later", {"days": 14}, "simulated 14 days later..."), ("lost", {"n": 2}, "2 case(s) left out...")]
    forecast = Forecast.model_construct(notes=[w for _, _, w in coded],
                                        note_codes=[NoteCode(code=c, params=p) for c, p, _ in coded])
    assert words_for("zh").forecast_notes(forecast) == [
        "司法确认申请期、复议申请期：按设计到期即失效的期间，不是须按时完成的时限，不为其测算所需人数",
        "按该时段自身的日历整周平移，推后 14 天模拟（测试服务器从今天开始，时钟只能向前走）；各项工作日计数与该时段相同",
        "2 件案件未计入：测试服务器上有操作始终没有回应",
    ]
    assert words_for("en").forecast_notes(forecast)[2] == "2 case(s) left out: an action never answered on the test server"
    untranslated = Forecast.model_construct(notes=["older words"], note_codes=[])
    assert words_for("zh").forecast_notes(untranslated) == ["older words"]
