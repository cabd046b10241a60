"""The free-text types: what they refuse (and how they say it), what they allow, NFC, the JSON
schema's pattern, and old payloads read back from JSON as they were recorded."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from disputeflow.domain.actions import ActionRequest, Ident, Note, Reason, Refer
from disputeflow.domain.intake import Intake
from disputeflow.domain.patterns import PHONE_PATTERN
from disputeflow.domain.text import (
    MULTI_LINE_PATTERN,
    MULTI_LINE_REQUIRED_PATTERN,
    SINGLE_LINE_PATTERN,
    SINGLE_LINE_REQUIRED_PATTERN,
    MultiLine,
    clean_text,
    SingleLine,
    multi_line,
    single_line,
)
from tests.samples import WAGE_ARREARS_CALL


class Form(BaseModel):
    name: single_line(min_length=1, max_length=10)
    story: multi_line(max_length=50) = ""
    tags: list[SingleLine] = []


# Every character refused in both kinds of field, with the words the message uses for it.
REFUSED_EVERYWHERE = [
    ("\x00", "a NUL character"), ("\x01", "a control character"), ("\x08", "a control character"),
    ("\x0b", "a line break"), ("\x0c", "a line break"), ("\x1b", "a control character"),
    ("\x1f", "a control character"), ("\x7f", "a control character"), ("\x85", "a line break"),
    ("\x9b", "a control character"), ("\x9f", "a control character"),
    *((chr(c), "a bidirectional override character") for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]),
    ("\ud800", "an unpaired surrogate"), ("\udfff", "an unpaired surrogate"),
]
# pydantic itself refuses these before our check (they cannot be encoded, so PostgreSQL could not
# store them either): still a 422 that does not echo the text, with another message.
REFUSED_BY_PYDANTIC = {"\ud800", "\udfff"}
ALLOWED_IN_MULTI_LINE_ONLY = ["\t", "\n"]


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"


@pytest.mark.parametrize(("char", "what"), REFUSED_EVERYWHERE, ids=[_code(c) for c, _ in REFUSED_EVERYWHERE])
def test_refused_in_every_field_with_a_message_naming_field_character_and_place(char: str, what: str) -> None:
    secret = "王五身份证"
    for field, value in (("name", f"王{char}五"), ("story", f"王{char}五\n第二行")):
        with pytest.raises(ValidationError) as caught:
            Form.model_validate({"name": "ok", field: value})
        [error] = caught.value.errors(include_input=False)
        assert error["loc"] == (field,)
        if char in REFUSED_BY_PYDANTIC:
            assert error["type"] == "string_unicode"
            with pytest.raises(PydanticCustomError, match=re.escape(f"contains {what} ({_code(char)})")):
                clean_text(value, multiline=True)
            continue
        assert error["type"] == "text_character_refused"
        assert error["msg"] == f"{field} contains {what} ({_code(char)}) at character 2: remove it and send again"
    with pytest.raises(ValidationError) as caught:
        Form.model_validate({"name": "ok", "tags": ["fine", f"{secret[:2]}{char}{secret[2:]}"]})
    [error] = caught.value.errors(include_input=False)
    assert error["loc"] == ("tags", 1) and secret not in error["msg"]


@pytest.mark.parametrize("char", ALLOWED_IN_MULTI_LINE_ONLY + ["\r"], ids=["tab", "LF", "CR"])
def test_tab_and_line_breaks_only_where_text_spans_lines(char: str) -> None:
    with pytest.raises(ValidationError, match=r"this field is a single line; remove it"):
        Form(name=f"a{char}b")
    assert "\r" not in Form(name="a", story=f"a{char}b").story


def test_line_endings_become_newlines() -> None:
    assert Form(name="a", story="一\r\n二\r三\n四\t五").story == "一\n二\n三\n四\t五"


def test_text_is_nfc_normalised_after_stripping() -> None:
    decomposed = "  Jose\u0301 \u5f20\u4e09 "  # e + combining acute accent
    form = Form(name=decomposed, story=decomposed)
    assert form.story == unicodedata.normalize("NFC", decomposed.strip()) == "José 张三"
    assert form.name == "José 张三"
    assert Form(name="Å").name == "\u00c5"  # the angstrom sign becomes the letter


def test_ordinary_text_passes_unchanged() -> None:
    text = "工地拖欠三个月工资，共计一万二千元。Ünïcödé émoji 🙂 𠀀 – “quotes” ‎ok"
    assert Form(name="张三", story=text).story == text
    assert TypeAdapter(MultiLine).validate_python(text) == text


def test_length_limits_keep_their_messages() -> None:
    with pytest.raises(ValidationError, match="at most 10 characters"):
        Form(name="长" * 11)
    with pytest.raises(ValidationError, match="at least 1 character"):
        Form(name="   ")


@pytest.mark.parametrize(("pattern", "allowed"), [(SINGLE_LINE_PATTERN, ""), (MULTI_LINE_PATTERN, "\t\n\r")])
def test_the_schema_pattern_says_what_the_validator_does(pattern: str, allowed: str) -> None:
    regex = re.compile(pattern.removesuffix("$") + r"\Z")  # ECMA-262 `$`: the very end, not before a last newline
    multiline = pattern == MULTI_LINE_PATTERN
    adapter = TypeAdapter(multi_line() if multiline else single_line())
    for code in [*range(0x00, 0xA0), *range(0x2000, 0x2070), 0xFEFF, 0x1F642]:
        char = chr(code)
        accepted = True
        try:
            adapter.validate_python(f"a{char}b")
        except ValidationError:
            accepted = False
        assert bool(regex.match(f"a{char}b")) == accepted, _code(char)
    assert allowed == "".join(c for c in "\t\n\r" if regex.match(c))


def test_the_json_schema_shows_the_patterns_and_limits() -> None:
    intake = Intake.model_json_schema()
    caller = intake["$defs"]["Caller"]["properties"]
    assert caller["name"]["pattern"] == SINGLE_LINE_REQUIRED_PATTERN and caller["name"]["maxLength"] == 50
    assert caller["phone"]["pattern"] == PHONE_PATTERN  # its own, narrower (disputeflow.domain.patterns)
    assert intake["properties"]["description"]["pattern"] == MULTI_LINE_REQUIRED_PATTERN
    assert intake["properties"]["description"]["maxLength"] == 2000
    refer = Refer.model_json_schema()["properties"]
    assert refer["note"]["pattern"] == MULTI_LINE_PATTERN
    assert TypeAdapter(Ident).json_schema()["pattern"] == SINGLE_LINE_REQUIRED_PATTERN  # min_length=1
    assert TypeAdapter(Ident).json_schema()["maxLength"] == 64


@pytest.mark.parametrize(
    "path",
    [("caller", "name"), ("description",), ("counterparty",), ("transfer_order_id",)],
    ids=lambda p: ".".join(p),
)
def test_every_text_field_of_the_intake_is_checked(path: tuple[str, ...]) -> None:
    body = {**WAGE_ARREARS_CALL, "caller": dict(WAGE_ARREARS_CALL["caller"])}
    target = body["caller"] if path[0] == "caller" else body
    target[path[-1]] = "13800\x00138000"
    with pytest.raises(ValidationError) as caught:
        Intake.model_validate(body)
    [error] = caught.value.errors(include_input=False)
    assert error["loc"] == path and error["type"] == "text_character_refused"


@pytest.mark.parametrize("field", ["phone", "id_number"])
def test_the_caller_numbers_refuse_control_characters_by_their_patterns(field: str) -> None:
    caller = {"name": "张三", "phone": "13800138000", field: "13800\x00138000"}
    with pytest.raises(ValidationError) as caught:
        Intake.model_validate({**WAGE_ARREARS_CALL, "caller": caller})
    assert [e["loc"] for e in caught.value.errors()] == [("caller", field)]


def test_the_action_aliases_are_the_checked_kinds() -> None:
    assert TypeAdapter(Note).validate_python("第一行\n第二行") == "第一行\n第二行"
    assert TypeAdapter(Note).validate_python("") == ""
    for alias in (Note, Reason):
        with pytest.raises(ValidationError, match="U\\+202E"):
            TypeAdapter(alias).validate_python("\u202e")
    assert TypeAdapter(Ident).validate_python(" med-1\n") == "med-1"  # stripped first
    with pytest.raises(ValidationError, match="single line"):
        TypeAdapter(Ident).validate_python("med\n-1")
    with pytest.raises(ValidationError, match="at least 1 character"):
        TypeAdapter(Reason).validate_python(" \n ")


def test_recorded_payloads_are_read_back_as_they_were_accepted() -> None:
    """Temporal's pydantic converter reads histories with `validate_json`: a case accepted before
    the check (a control character in its description) must still replay, unchanged."""
    old = {**WAGE_ARREARS_CALL, "description": "旧案\x07描述 e\u0301"}
    intake = Intake.model_validate_json(json.dumps(old))
    assert intake.description == old["description"]
    request = ActionRequest.model_validate_json(json.dumps({
        "request_id": "r-1", "actor": {"user_id": "op-1", "role": "operator"},
        "command": {"type": "send_to_mediation", "note": "\u202e旧"}}))
    assert request.command.note == "\u202e旧"
    with pytest.raises(ValidationError):  # and a new request is checked
        Intake.model_validate(old)


@pytest.mark.parametrize("multiline", [False, True])
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_required_field_accepts_what_its_pattern_allows_and_nothing_blank(multiline: bool, data: st.DataObject) -> None:
    """Stripped first, a required field needs a character that is not white space: its pattern says so,
    so a schema-valid " " is not refused as too short."""
    pattern = MULTI_LINE_REQUIRED_PATTERN if multiline else SINGLE_LINE_REQUIRED_PATTERN
    field = (multi_line if multiline else single_line)(min_length=1, max_length=2000)
    text = data.draw(st.from_regex(re.compile(pattern), fullmatch=True).filter(
        lambda t: len(t) <= 2000 and not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))  # surrogates: code only
    assert TypeAdapter(field).validate_python(text)
    for blank in (" ", "\u3000", "\xa0 ", "\n" if multiline else "\u2028"):
        assert re.fullmatch(pattern, blank) is None
        with pytest.raises(ValidationError):
            TypeAdapter(field).validate_python(blank)
