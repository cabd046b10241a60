"""HTML forms from the commands' own pydantic schemas, and form posts back into their input.

An action's form is generated from `COMMAND_TYPES[kind].model_json_schema()`: one field per
property (a nested object, such as an extension's `by`, becomes `by.amount` and `by.unit`), with
the type, the bounds, the choices and the required flag the schema gives. What a person posts is
turned back into the nested input and validated by the same model the API validates with; its
errors come back by field, in words, beside the field they concern, with what was typed kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

TEXTAREA_FROM_CHARS = 500


@dataclass
class FormField:
    name: str  # dotted for nested objects: "by.amount"
    kind: str  # text | textarea | number | select | yesno | confirm | checkboxes | lines
    required: bool
    options: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    description: str | None = None
    step: str | None = None

    @property
    def dom_id(self) -> str:
        return "f-" + self.name.replace(".", "-")

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _resolve(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[-1]])
    if "anyOf" in node:  # Optional[X]: the X
        choices = [c for c in node["anyOf"] if c.get("type") != "null"]
        if len(choices) == 1:
            merged = {k: v for k, v in node.items() if k != "anyOf"}
            return {**_resolve(schema, choices[0]), **merged}
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {k: v for k, v in node.items() if k != "allOf"}
        return {**_resolve(schema, node["allOf"][0]), **merged}
    return node


def fields_of(model: type[BaseModel], *, skip: frozenset[str] = frozenset({"type"})) -> list[FormField]:
    schema = model.model_json_schema()
    return _fields(schema, schema, prefix="", skip=skip)


def _fields(schema: dict[str, Any], node: dict[str, Any], *, prefix: str, skip: frozenset[str]) -> list[FormField]:
    found: list[FormField] = []
    required = set(node.get("required", []))
    for name, raw in node.get("properties", {}).items():
        if name in skip:
            continue
        spec = _resolve(schema, raw)
        full = f"{prefix}{name}"
        is_required = name in required
        if spec.get("type") == "object" and "properties" in spec:
            found += _fields(schema, spec, prefix=f"{full}.", skip=frozenset())
            continue
        common = {"name": full, "required": is_required, "description": spec.get("description")}
        if "enum" in spec:
            found.append(FormField(kind="select", options=[str(v) for v in spec["enum"]], **common))
        elif spec.get("const") is True:
            found.append(FormField(kind="confirm", **{**common, "required": True}))
        elif spec.get("type") == "boolean":
            found.append(FormField(kind="yesno", **common))
        elif spec.get("type") in ("integer", "number"):
            found.append(FormField(kind="number", minimum=spec.get("minimum", spec.get("exclusiveMinimum")),
                                   maximum=spec.get("maximum"), step="1" if spec["type"] == "integer" else "any",
                                   **common))
        elif spec.get("type") == "array":
            items = _resolve(schema, spec.get("items", {}))
            if "enum" in items:
                found.append(FormField(kind="checkboxes", options=[str(v) for v in items["enum"]], **common))
            else:  # free items: one per line
                found.append(FormField(kind="lines", max_length=items.get("maxLength"), **common))
        else:
            max_length = spec.get("maxLength")
            kind = "textarea" if (max_length or 0) >= TEXTAREA_FROM_CHARS else "text"
            found.append(FormField(kind=kind, max_length=max_length, **common))
    return found


def nest(form: dict[str, Any], fields: list[FormField]) -> dict[str, Any]:
    """The posted values as the model's input. An empty optional field is left out (its default
    applies); a required one is sent empty, so the model names it."""
    data: dict[str, Any] = {}
    for f in fields:
        value = form.get(f.name)
        if f.kind == "confirm":
            value = True if value in ("true", "on") else None
        elif f.kind == "checkboxes":
            value = [v for v in ([value] if isinstance(value, str) else value or []) if v]
        elif f.kind == "lines":
            value = [line.strip() for line in str(value or "").splitlines() if line.strip()]
        elif isinstance(value, str):
            value = value.strip() if f.kind != "textarea" else value
        if value in (None, "") and not (f.required and f.kind not in ("confirm",)):
            continue
        if value is None:
            continue
        target = data
        *parents, leaf = f.name.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return data


# Chinese for the validation errors people meet, by pydantic's error type (and, for the intake
# model's own checks, by what the message is about); anything else is shown as the model says it.
_BY_TYPE = {"missing": "msg.required", "string_too_long": "msg.too_long", "greater_than_equal": "msg.at_least",
            "greater_than": "msg.more_than", "less_than_equal": "msg.at_most", "enum": "msg.choose",
            "literal_error": "msg.choose", "bool_parsing": "msg.choose", "int_parsing": "msg.number",
            "float_parsing": "msg.number", "string_pattern_mismatch": "msg.pattern"}
_BY_TEXT = (("phone number", "msg.phone"), ("identity card", "msg.id_number"), ("province-level prefix", "msg.region"))


def _in_words(item: dict[str, Any], language: str) -> str:
    from api.console.web import translate

    message = item["msg"].removeprefix("Value error, ")
    if language == "en":
        return message
    ctx = item.get("ctx") or {}
    key = _BY_TYPE.get(item["type"])
    if item["type"] == "string_too_short":
        key = "msg.required" if ctx.get("min_length") == 1 else "msg.too_short"
    if item["type"] == "value_error":
        key = next((k for text, k in _BY_TEXT if text in message), None)
    if key is None:
        return message
    limit = ctx.get("ge", ctx.get("gt", ctx.get("le")))
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)
    values = {"min": ctx.get("min_length"), "max": ctx.get("max_length"), "limit": limit}
    return translate(language, key, **values)


def errors_by_field(error: ValidationError, *, drop: int = 0, language: str = "en") -> dict[str, str]:
    """`{dotted field: message}` for each error (`drop` leading loc parts, e.g. a body's name), in
    `language` where the catalogue has the words."""
    found: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        loc = [str(p) for p in item["loc"][drop:] if not (isinstance(p, str) and p.startswith("function-"))]
        name = ".".join(p for p in loc if not p.isdigit()) or "_form"
        found.setdefault(name, _in_words(item, language))
    return found


def form_values(form: Any) -> dict[str, Any]:
    """A Starlette form as a dict: one value per field, a list for repeated ones."""
    values: dict[str, Any] = {}
    for key in form.keys():
        many = form.getlist(key)
        values[key] = many if len(many) > 1 or key.endswith("[]") else many[0]
    return values
