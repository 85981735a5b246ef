"""fal's two error dialects (docs.fal.ai/errors and .../request-errors):

- model errors: HTTP 4xx with {"detail": [{loc, msg, type, url, ctx?, input?}, ...]}
  (pydantic-style validation entries, content_policy_violation, file errors);
- request errors: {"detail": "<text>", "error_type": "<kind>"} plus an
  X-Fal-Error-Type header (timeouts, cancellations, runner failures).

fal_client surfaces either as FalClientHTTPError: `.message` is the `detail`
(a list for model errors), `.error_type` comes from the body or header, so it is
None for model errors; look at `detail[i]["type"]` instead.
"""

from __future__ import annotations

from typing import Any

from ._http import Response, json_response
from ._schema import Issue

_PY_TYPES = {"string": "string_type", "integer": "int_type", "number": "float_type", "boolean": "bool_type",
             "array": "list_type", "object": "dict_type"}
_PY_NAMES = {"string": "a valid string", "integer": "a valid integer", "number": "a valid number",
             "boolean": "a valid boolean", "array": "a valid list", "object": "a valid dictionary"}
CPV_MSG = "The content could not be processed because it contained material flagged by a content checker."


def entry(loc: list, msg: str, kind: str, value: Any = None, ctx: dict | None = None) -> dict:
    out = {"loc": ["body", *loc], "msg": msg, "type": kind, "url": f"https://docs.fal.ai/errors#{kind}"}
    if ctx:
        out["ctx"] = ctx
    if value is not None:
        out["input"] = value
    return out


def _entry(issue: Issue) -> dict:
    loc = list(issue.path)
    if issue.kind == "additional":
        return entry(loc, "Extra inputs are not permitted", "extra_forbidden", issue.value)
    if issue.kind == "required":
        return entry(loc, "Field required", "missing")
    if issue.kind == "type":
        return entry(loc, f"Input should be {_PY_NAMES.get(issue.expected, issue.expected)}",
                     _PY_TYPES.get(issue.expected, "type_error"), issue.value)
    if issue.kind == "enum":
        names = [f"'{v}'" for v in issue.expected]
        expected = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        return entry(loc, f"Input should be {expected}", "literal_error", issue.value, {"expected": expected})
    if issue.kind == "minimum":
        return entry(loc, f"Input should be greater than or equal to {issue.expected}", "greater_than_equal",
                     issue.value, {"ge": issue.expected})
    if issue.kind == "maximum":
        return entry(loc, f"Input should be less than or equal to {issue.expected}", "less_than_equal",
                     issue.value, {"le": issue.expected})
    if issue.kind == "max_items":
        return entry(loc, f"List should have at most {issue.expected} items after validation, not {issue.value}",
                     "too_long", None, {"max_length": issue.expected, "actual_length": issue.value})
    if issue.kind == "min_items":
        return entry(loc, f"List should have at least {issue.expected} item after validation, not {issue.value}",
                     "too_short", None, {"min_length": issue.expected, "actual_length": issue.value})
    return entry(loc, "Input should be a valid URL", "url_parsing", issue.value)


def validation_detail(issues: list[Issue]) -> list[dict]:
    return [_entry(i) for i in issues]


def content_policy_detail(prompt: Any) -> list[dict]:
    return [entry(["prompt"], CPV_MSG, "content_policy_violation", prompt, {"categories": ["model_moderated"]})]


def model_error(detail: list[dict], status: int = 422) -> Response:
    return json_response({"detail": detail}, status, {"X-Fal-Retryable": "false"})


def request_error(status: int, detail: str, error_type: str, headers: dict | None = None) -> Response:
    return json_response({"detail": detail, "error_type": error_type}, status,
                         {"X-Fal-Error-Type": error_type, **(headers or {})})
