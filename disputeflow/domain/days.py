"""Days and instants as the API takes them: the documented form only, in the years 2000 to 2999.

Old enough for any record and far from the limits of datetime arithmetic (a forecast adds weeks to
its start, a report a year to its first day). JSON Schema has no minimum for a date, so the schema
says the range with a pattern, and the code refuses exactly what the pattern refuses: a request the
document allows is never turned away for its date.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator, Field, WithJsonSchema

YEAR = r"2[0-9]{3}"
DAY_PATTERN = rf"^{YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])$"
# RFC 3339 as JSON Schema's `date-time` format has it (which requires the offset), in those years.
INSTANT_PATTERN = rf"^{YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"


def _day_as_written(value: object) -> object:
    """Only the documented form: pydantic would also take a timestamp or a datetime at midnight."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value  # from Python code, not from a request
    if not isinstance(value, str) or re.fullmatch(DAY_PATTERN, value, flags=re.ASCII) is None:
        raise ValueError("a day is written YYYY-MM-DD, in the years 2000 to 2999")
    return value


def _instant_as_written(value: object) -> object:
    """Only the documented form: pydantic would also take a number as seconds since 1970."""
    if isinstance(value, datetime):
        return value  # from Python code, not from a request
    if not isinstance(value, str) or re.match(INSTANT_PATTERN, value, flags=re.ASCII) is None:
        raise ValueError("an instant is written YYYY-MM-DDThh:mm:ss+08:00 (RFC 3339), in the years 2000 to 2999")
    return value


Day = Annotated[date, BeforeValidator(_day_as_written), Field(ge=date(2000, 1, 1), le=date(2999, 12, 31)),
                WithJsonSchema({"type": "string", "format": "date", "pattern": DAY_PATTERN})]

Instant = Annotated[AwareDatetime, BeforeValidator(_instant_as_written),
                    WithJsonSchema({"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN})]
