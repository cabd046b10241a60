"""The shapes of the identifiers a caller gives, as ECMA-262 patterns (JSON Schema's dialect, also
valid for Python's `re` with `re.ASCII`), so that the API's OpenAPI document says exactly what
intake accepts.

- `PHONE_PATTERN`: a mainland number, mobile or fixed line, as `phonenumbers` knows the numbering
  plan: built from its own metadata for CN, so every string it matches is a number
  `phonenumbers.is_valid_number` accepts (tests/domain/test_patterns.py checks that, on generated
  examples). Forms: `13800138000`, `+86 138 0013 8000`, `0086-13800138000`, `0531-86012348`,
  `+86 531 8601 2348`: digits, with at most one space or hyphen after any digit.
- `ID_NUMBER_PATTERN`: an 18-character resident identity card number whose birth date exists
  (1900-2099; `x` or `X` as the last character). What a pattern cannot say is left to code and
  treated as a rule of the world, not as malformed input: the check digit, and a birthplace code
  that names a county existing in the birth year (`disputeflow.domain.intake.ID_NUMBER_RULE`).
- `REGION_CODE_PATTERN`: a 6-digit administrative division code under a province-level prefix.
"""

from __future__ import annotations

import re
from typing import Any

from phonenumbers import PhoneMetadata

try:  # Python 3.11 has both; the private names are the ones that stay
    import re._constants as _c  # type: ignore[import-not-found]
    import re._parser as _parser  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

# Province-level prefixes of the 6-digit administrative division codes (GB/T 2260).
PROVINCE_PREFIXES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)
REGION_CODE_PATTERN = rf"^(?:{'|'.join(sorted(PROVINCE_PREFIXES))})[0-9]{{4}}$"

_SEPARATOR = "[ -]?"  # after any digit: "138 0013 8000", "0531-86012348"


def _with_separators(nodes: Any) -> str:
    """The digits-only regex `nodes` (from `re._parser`), each digit optionally followed by one
    separator; `\\d` spelt [0-9] so that no other script's digits match."""
    out = []
    for op, av in nodes:
        if op is _c.LITERAL and chr(av).isdigit():
            out.append(chr(av) + _SEPARATOR)
        elif op is _c.IN:
            parts = []
            for item_op, item in av:
                if item_op is _c.LITERAL:
                    parts.append(chr(item))
                elif item_op is _c.RANGE:
                    parts.append(f"{chr(item[0])}-{chr(item[1])}")
                elif item_op is _c.CATEGORY and item is _c.CATEGORY_DIGIT:
                    parts.append("0-9")
                else:
                    raise ValueError(f"unexpected in a numbering-plan pattern: {item_op} {item}")
            out.append(f"[{''.join(parts)}]{_SEPARATOR}")
        elif op is _c.MAX_REPEAT:
            low, high, sub = av
            times = "?" if (low, high) == (0, 1) else f"{{{low}}}" if low == high else f"{{{low},{high}}}"
            out.append(f"(?:{_with_separators(sub)}){times}")
        elif op is _c.SUBPATTERN:
            out.append(f"(?:{_with_separators(av[-1])})")
        elif op is _c.BRANCH:
            out.append("(?:" + "|".join(_with_separators(branch) for branch in av[1]) + ")")
        else:
            raise ValueError(f"unexpected in a numbering-plan pattern: {op} {av}")
    return "".join(out)


def _national(kind: str) -> str:
    pattern = getattr(PhoneMetadata.metadata_for_region("CN"), kind).national_number_pattern
    return _with_separators(list(_parser.parse(pattern)))


_MOBILE, _FIXED = _national("mobile"), _national("fixed_line")
PHONE_PATTERN = (rf"^(?:(?:\+|00)86{_SEPARATOR}(?:{_MOBILE}|{_FIXED})"  # international: no trunk 0
                 rf"|{_MOBILE}|0{_SEPARATOR}{_FIXED})$")  # national: a fixed line after its trunk 0

_LEAP_YEARS = "(?:19(?:0[48]|[2468][048]|[13579][26])|20(?:0[048]|[2468][048]|[13579][26]))"
_BIRTH_DATE = ("(?:(?:19|20)[0-9]{2}(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)"
               f"|02(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEARS}0229)")
ID_NUMBER_PATTERN = rf"^(?:[1-9][0-9]{{5}}{_BIRTH_DATE}[0-9]{{3}}[0-9Xx])?$"  # empty: not given


def matches(pattern: str, value: str) -> bool:
    """As a JSON Schema validator would judge it (ECMA `\\d` and classes are ASCII)."""
    return re.fullmatch(pattern, value, flags=re.ASCII) is not None  # `$` before a final newline: not in ECMA
