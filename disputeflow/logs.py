"""One logging set-up for the API, the worker and the CLI.

- On a terminal: readable lines. Otherwise (a file, a pipe, a log collector): one JSON object per
  line. `DISPUTEFLOW_LOG_FORMAT` (auto | json | text) overrides the choice.
- Each line carries, where known, `request_id`, `user_id`, `case_id` and `workflow_id`: from the
  context of the request or activity being served (`bind`), and from the Temporal SDK's workflow
  and activity loggers, which put the workflow's info on the record.
- Never a caller's personal data: the context holds ids only, and the API logs its requests by
  route template (`/cases/{case_id}`), never with the query string (`?phone=`, `?q=`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

CONTEXT_FIELDS = ("request_id", "user_id", "case_id", "workflow_id")

# A dict, not one variable per field: the API's token check runs in a thread pool (a copy of the
# context) and sets the user id on the same dict the request's middleware created.
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("disputeflow_log_context",
                                                                                  default=None)


def context() -> dict[str, str]:
    return dict(_context.get() or {})


@contextmanager
def bind(**fields: str | None) -> Iterator[dict[str, str]]:
    """Add fields to every log line written inside the block (in this task and the threads it hands
    work to); returns the live dict, for fields learnt later (`update`)."""
    current = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(current)
    try:
        yield current
    finally:
        _context.reset(token)


def update(**fields: str | None) -> None:
    """Add fields to the context bound by the innermost `bind` (nothing outside one)."""
    current = _context.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def case_id_of(workflow_id: str | None) -> str | None:
    """`case-370102-20261202-0001` -> `370102-20261202-0001`."""
    if workflow_id and workflow_id.startswith("case-"):
        return workflow_id.removeprefix("case-")
    return None


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(_context.get() or {})
    # The SDK's workflow.logger / activity.logger put the workflow's info on the record.
    for extra in ("temporal_workflow", "temporal_activity"):
        info = getattr(record, extra, None)
        if isinstance(info, dict):
            fields.setdefault("workflow_id", info.get("workflow_id"))
            if extra == "temporal_activity" and info.get("activity_type"):
                fields["activity"] = info["activity_type"]
            if extra == "temporal_workflow" and info.get("workflow_type"):
                fields["workflow_type"] = info["workflow_type"]
    if fields.get("workflow_id") and "case_id" not in fields:
        fields["case_id"] = case_id_of(fields["workflow_id"])
    for name in CONTEXT_FIELDS + ("route", "status", "duration_ms", "method"):
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return {k: v for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if fields:
            text += "  [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return text


def wants_json(log_format: str = "auto", stream: TextIO | None = None) -> bool:
    if log_format != "auto":
        return log_format == "json"
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def setup(log_format: str | None = None, level: str | None = None, *, stream: TextIO | None = None) -> None:
    """Configure the root logger (idempotent). Unset arguments come from DISPUTEFLOW_LOG_FORMAT and
    DISPUTEFLOW_LOG_LEVEL. Uvicorn's loggers go through it too; its access log is off (it prints
    raw paths with their query strings): the API logs each request itself (`api.middleware`)."""
    log_format = log_format or os.environ.get("DISPUTEFLOW_LOG_FORMAT", "auto")
    level = (level or os.environ.get("DISPUTEFLOW_LOG_LEVEL", "INFO")).upper()
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if wants_json(log_format, stream) else TextFormatter())
    handler._disputeflow = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_disputeflow", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # httpx logs every request's full URL at INFO (a test client's would carry query strings).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))  # a line per migration, every start
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
