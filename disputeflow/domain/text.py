"""Free text as the hotline keeps it: Unicode NFC, and none of the characters that break a database
column, a log line or a screen.

Two annotated types, used by every free-text field of the intake and of the action commands:

- `SingleLine` (names, ids, organisations, numbers): no C0 or C1 control character at all, tab and
  line breaks included;
- `MultiLine` (descriptions, notes, reasons): the same, except that tab and newline are allowed
  (a CR or CRLF line ending becomes a newline).

Both also refuse the Unicode bidirectional embedding, override and isolate characters
(U+202A–U+202E, U+2066–U+2069: they make text display in another order than it is stored, the
"Trojan Source" trick) and unpaired surrogates (which cannot be encoded as UTF-8, so PostgreSQL
could never store them). PostgreSQL refuses a NUL in a text column outright, so a case carrying
one would never reach the read model.

An offending value gets a validation error (a 422 at the API) that names the field, the kind of
character, its code point and position, never the text itself. Clean text is NFC-normalised, so
that the same name typed on two keyboards compares, searches and deduplicates alike.

The check applies where text comes in: values validated from Python objects, which is how FastAPI
validates request bodies. Values decoded from JSON (`model_validate_json`, which is how Temporal's
pydantic converter reads workflow inputs, updates and activity arguments back from a history) are
taken as recorded: the models carried in histories must keep reading old payloads, and tightening
them would make a running case that was accepted before this check fail its next workflow task.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, StringConstraints, ValidationInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

BIDI_CONTROLS = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))
MULTILINE_ALLOWED = frozenset("\t\n")

# The same rule for JSON Schema (an ECMA-262 pattern, also valid for Python's `re`): what a client
# may check before sending. Unpaired surrogates are not in it: a pattern without the `u` flag
# would also refuse every character outside the BMP (emoji, rare CJK), which is fine text.
_REFUSED_EVERYWHERE = r"\x7F-\x9F\u202A-\u202E\u2066-\u2069"
SINGLE_LINE_PATTERN = rf"^[^\x00-\x1F{_REFUSED_EVERYWHERE}]*$"
MULTI_LINE_PATTERN = rf"^[^\x00-\x08\x0B\x0C\x0E-\x1F{_REFUSED_EVERYWHERE}]*$"  # tab, LF, CR allowed
# A field that may not be empty is stripped first, so it needs one character that is not white
# space (Unicode White_Space, which the strip removes): " " is as empty as "".
_NOT_BLANK = rf"[^\x00-\x20{_REFUSED_EVERYWHERE}\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
SINGLE_LINE_REQUIRED_PATTERN = rf"^[^\x00-\x1F{_REFUSED_EVERYWHERE}]*{_NOT_BLANK}[^\x00-\x1F{_REFUSED_EVERYWHERE}]*$"
MULTI_LINE_REQUIRED_PATTERN = (rf"^[^\x00-\x08\x0B\x0C\x0E-\x1F{_REFUSED_EVERYWHERE}]*{_NOT_BLANK}"
                               rf"[^\x00-\x08\x0B\x0C\x0E-\x1F{_REFUSED_EVERYWHERE}]*$")


def _what(char: str) -> str:
    code = ord(char)
    if code == 0:
        return "a NUL character"
    if char == "\t":
        return "a tab"
    if char in "\n\r\x0b\x0c\x85":
        return "a line break"
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return "a control character"
    if code in BIDI_CONTROLS:
        return "a bidirectional override character"
    return "an unpaired surrogate"


def _refused(char: str, multiline: bool) -> bool:
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return not (multiline and char in MULTILINE_ALLOWED)
    return code in BIDI_CONTROLS or 0xD800 <= code <= 0xDFFF


def clean_text(value: str, *, multiline: bool, field: str | None = None) -> str:
    """`value` NFC-normalised (multi-line: CR and CRLF line endings as LF); a `PydanticCustomError`
    naming `field` and the first refused character (kind, code point, position), not the text."""
    if multiline and "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    for position, char in enumerate(value, start=1):
        if _refused(char, multiline):
            hint = "this field is a single line; " if char in "\t\n\r" and not multiline else ""
            raise PydanticCustomError(
                "text_character_refused",
                "{field} contains {what} ({code}) at character {position}: {hint}remove it and send again",
                {"field": field or "the text", "what": _what(char), "code": f"U+{ord(char):04X}",
                 "position": position, "hint": hint},
            )
    return unicodedata.normalize("NFC", value)


@dataclass(frozen=True)
class CleanText:
    """Annotated metadata: validate with `clean_text` after the string's own constraints, and say
    so in the JSON schema with a `pattern`."""

    multiline: bool
    required: bool = False  # at least one character after stripping

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        if self.required:
            json_schema["pattern"] = MULTI_LINE_REQUIRED_PATTERN if self.multiline else SINGLE_LINE_REQUIRED_PATTERN
        else:
            json_schema["pattern"] = MULTI_LINE_PATTERN if self.multiline else SINGLE_LINE_PATTERN
        return json_schema

    def _validate(self, value: str, info: ValidationInfo) -> str:
        if info.mode == "json":  # read back from a recorded payload: as it was accepted then
            return value
        return clean_text(value, multiline=self.multiline, field=info.field_name)


def single_line(*, min_length: int | None = None, max_length: int | None = None) -> Any:
    """`SingleLine` with length limits (counted after stripping, before NFC). Narrow with this, not
    with `Annotated[SingleLine, StringConstraints(...)]`: constraints after the check lose their
    string-specific messages ("at most 50 characters")."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
                     CleanText(multiline=False, required=bool(min_length))]


def multi_line(*, min_length: int | None = None, max_length: int | None = None) -> Any:
    """`MultiLine` with length limits; see `single_line`."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
                     CleanText(multiline=True, required=bool(min_length))]


SingleLine = single_line()
MultiLine = multi_line()
