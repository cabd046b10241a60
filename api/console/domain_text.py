"""The domain's words in the console's languages: task titles, refusals, what an action did, the
auditor's timeline, clock names and statuses, a forecast's notes.

The domain says these in English (the API answers with them). The console words each by a stable
key from the catalogue instead: a task by its title key (`tasks.title_key`), a refusal by its code
(`Refused.code`, carried beside the API's words), an action by its command type (`did.<type>`, from
the fields the history recorded), a timeline line by its kind, a clock by its name, a forecast's note
by its code (`Forecast.note_codes`, beside the API's words). Values that are
themselves enum values (a stage, a role, a clock, an outcome) are worded from the catalogue too.
Where no key is known (a refusal from a legacy workflow), the domain's own English is shown.
"""

from __future__ import annotations

import re
import string
from datetime import datetime
from typing import Any

from api.errors import TransitionRefused
from disputeflow.domain.process.tasks import title_key

# Which catalogue family words a value, by the name it goes by.
_KINDS = {
    "stage": "stage", "stages": "stage", "role": "role", "roles": "role", "action": "action", "clock": "clock",
    "status": "clock_status", "outcome": "outcome", "final_outcome": "outcome", "body": "body", "forum": "forum",
    "reason": "reason", "channel": "channel", "category": "category", "dispute_type": "dispute_type",
    "urgency": "urgency", "unit": "unit",
}
_EMPTY_BRACKETS = re.compile(r"\s?[（(]\s*[）)]")
_CLOCK_NUMBER = re.compile(r"-\d+$")


class Words:
    """The domain's words in one language, given the catalogue's lookup (`message(key)` or None)."""

    def __init__(self, language: str, message: Any) -> None:
        self.language = language
        self.message = message

    def _value(self, name: str, value: Any) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, bool):
            return self.message("form.yes" if value else "form.no") or str(value)
        if isinstance(value, (list, tuple)):
            return ("、" if self.language == "zh" else ", ").join(self._value(name, v) for v in value)
        if hasattr(value, "amount") and hasattr(value, "unit"):
            value = {"amount": value.amount, "unit": value.unit}
        if isinstance(value, dict) and "amount" in value:  # a span: {"amount": 2, "unit": "working_days"}
            amount = value.get("amount")
            if isinstance(amount, float) and amount.is_integer():
                amount = int(amount)
            return f"{amount} {self._value('unit', value.get('unit'))}"
        raw = getattr(value, "value", value)
        kind = _KINDS.get(name)
        if kind is not None and isinstance(raw, str):
            return self.message(f"{kind}.{raw}") or raw
        return str(raw)

    def say(self, key: str, fallback: str = "", **values: Any) -> str:
        """The message `key` with `values` worded; `fallback` if the catalogue has no such key."""
        text = self.message(key)
        if text is None:
            return fallback
        worded = {name: self._value(name, value) for name, value in values.items()}
        said = string.Formatter().vformat(text, (), _Blank(worded))
        return _EMPTY_BRACKETS.sub("", said)  # an optional note left out: no empty brackets

    def span(self, by: Any) -> str:
        """A span, recorded ({"amount", "unit"}) or as the API says it ("5 working days")."""
        if isinstance(by, str) and (m := re.fullmatch(r"([\d.]+) ([a-z ]+)", by)):
            by = {"amount": m.group(1), "unit": m.group(2).replace(" ", "_")}
        return self._value("by", by)

    def clock(self, name: str) -> str:
        return self._value("clock", name)

    def task(self, kind: str, title: str, task_key: str = "") -> str:
        """A task's title; an extension decision names the clock its key ends with."""
        clock = ""
        if kind == "decide_extension" and "-decide_extension-" in task_key:
            clock = self.clock(_CLOCK_NUMBER.sub("", task_key.rsplit("-decide_extension-", 1)[1]))
        return self.say(f"task.{title_key(kind, title)}", title, clock=clock)

    def refusal(self, refused: TransitionRefused) -> str:
        if refused.code is None:
            return refused.detail
        return self.say(f"refusal.{refused.code}", refused.detail, **refused.params)

    def forecast_notes(self, forecast: Any) -> list[str]:
        """A forecast's notes (`Forecast.notes`, English), each by its code (`Forecast.note_codes`)."""
        codes = list(forecast.note_codes)
        if len(codes) != len(forecast.notes):  # a result without its codes: the API's words
            return list(forecast.notes)
        return [self.say(f"forecast.note.{c.code}", words, **c.params) for c, words in zip(codes, forecast.notes)]

    def did(self, command: dict[str, Any]) -> str:
        """What an action did, from the fields the history recorded (`did.<command type>`)."""
        fields = {k: v for k, v in command.items() if k not in ("type", "id_number")}
        return self.say(f"did.{command.get('type')}", "", **fields) or str(command.get("type", "?"))

    def story(self, entry: Any) -> str:
        """One line of the auditor's timeline (a `history.TimelineEntry`), by its kind."""
        d, kind = entry.data, entry.kind
        if kind == "action":
            action = self.message(f"action.{d.get('command', {}).get('type')}") or ""
            if d.get("outcome") == "failed":
                return self.say("story.action_failed", entry.summary, action=action, reason=d.get("reason"))
            if d.get("outcome") == "pending":
                return self.say("story.action_pending", entry.summary, action=action)
            repeat = self.message("story.action_repeat") if d.get("repeat") else ""
            return self.did(d.get("command") or {}) + (repeat or "")
        if kind == "case_event":
            event = self.message(f"event.{d.get('type')}") or str(d.get("type"))
            clock_id = d.get("clock_id")
            if isinstance(clock_id, str):
                return self.say("story.case_event_clock", entry.summary, event=event,
                                clock=self.clock(_CLOCK_NUMBER.sub("", clock_id)))
            return self.say("story.case_event", entry.summary, event=event)
        if kind in ("timer_started", "timer_fired"):
            fires_at = d.get("fires_at")
            when = _local(fires_at) if fires_at else ""
            return self.say(f"story.{kind}", entry.summary, timer_id=d.get("timer_id"), fires_at=when,
                            alarms=self._alarms(d.get("alarms") or []))
        if kind == "policy_pinned":
            return self.say("story.policy_pinned", entry.summary, version=d.get("version"),
                            fingerprint=str(d.get("fingerprint"))[:12])
        if kind == "continued_as_new":
            return self.say("story.continued_as_new", entry.summary, event_id=entry.event_id)
        if kind == "run_continued":
            return self.say("story.run_continued", entry.summary, run=entry.run, stage=d.get("stage"))
        return self.say(f"story.{kind}", entry.summary, **d)

    def _alarms(self, alarms: list[dict[str, Any]]) -> str:
        if not alarms:
            return self.message("story.no_alarm") or ""
        lines = [self.say("story.alarm_warning", "", clock=self.clock(a.get("clock")),
                          fraction=f"{a.get('fraction') or 0:.0%}") if a.get("alarm") == "warning"
                 else self.say("story.alarm_breach", "", clock=self.clock(a.get("clock"))) for a in alarms]
        return ("；" if self.language == "zh" else "; ").join(lines)


class _Blank(dict):
    """A message's values; a value the message names but the record lacks is left blank."""

    def __missing__(self, key: str) -> str:
        return ""


def _local(moment: str) -> str:
    from api.console.web import _local_time  # the pages' own way of showing a time

    return _local_time(datetime.fromisoformat(moment))
