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
    for kind, values in (("stage", Stage), ("role", Role), ("channel", Channel), ("category", Category),
                         ("dispute_type", DisputeType), ("urgency", Urgency), ("special_groups", SpecialGroup)):
        wanted |= {f"{kind}.{v.value}" for v in values}
    missing = sorted(k for k in wanted if k not in messages)
    assert missing == []
    assert len(wanted) > 150  # the check looked at the pages' messages, not at nothing
