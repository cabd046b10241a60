"""Sample data shared by the workflow and API tests."""

from __future__ import annotations

from typing import Any

# A migrant worker's wage-arrears call: the hotline's classic case.
WAGE_ARREARS_CALL: dict[str, Any] = {
    "channel": "hotline",
    "caller": {"name": "张三", "phone": "13800138000"},
    "region_code": "370102",
    "category": "dispute",
    "dispute_type": "labour_wages",
    "urgency": "normal",
    "special_groups": ["migrant_worker"],
    "description": "工地拖欠三个月工资，共计一万二千元，包工头失联。",
}
