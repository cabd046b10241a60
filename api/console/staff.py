"""Who the development sign-in offers: the reference mediators (disputeflow/data/reference.json) and
a few staff of the other roles. Shown only while no OpenID Connect issuer is configured."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from disputeflow.settings import DEFAULT_REFERENCE_FILE


@dataclass(frozen=True)
class StaffMember:
    user_id: str
    role: str
    region: str
    name: str


DEV_STAFF = (
    StaffMember("op-1", "operator", "370102", "张晓燕"),
    StaffMember("op-bj", "operator", "110105", "高明"),
    StaffMember("la-1", "legal_aid_officer", "370102", "钱丽"),
    StaffMember("sup-1", "supervisor", "3701", "马国庆"),
    StaffMember("sup-bj", "supervisor", "1101", "罗红"),
    StaffMember("aud-1", "auditor", "37", "林涛"),
)


@lru_cache
def reference_staff(reference_file: Path = DEFAULT_REFERENCE_FILE) -> tuple[StaffMember, ...]:
    data = json.loads(reference_file.read_text(encoding="utf-8"))
    mediators = tuple(StaffMember(m["id"], "mediator", m["region_code"], m["name"]) for m in data["mediators"])
    return DEV_STAFF + mediators


def find(user_id: str) -> StaffMember | None:
    return next((m for m in reference_staff() if m.user_id == user_id), None)
