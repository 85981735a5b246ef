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

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Failure:
    """How a queued request that failed while running reports it (FakeFal.fail_next_requests).

    Its status reaches COMPLETED with `error`/`error_type`, and GET result answers `status` with the payload
    in the dialect it belongs to: a request error (`detail` text + `error_type`, X-Fal-Error-Type header) or a
    model error (`detail` list, X-Fal-Retryable header where `retryable` is not None).
    """

    status: int
    detail: str | list
    error_type: str | None = None
    retryable: bool | None = None

    def response(self) -> Response:
        if isinstance(self.detail, str):
            return request_error(self.status, self.detail, self.error_type or "internal_error")
        headers = {} if self.retryable is None else {"X-Fal-Retryable": "true" if self.retryable else "false"}
        return json_response({"detail": self.detail}, self.status, headers)

    def status_fields(self) -> dict:
        if isinstance(self.detail, str):
            return {"error": self.detail, "error_type": self.error_type or "internal_error"}
        return {"error": self.detail[0]["msg"], "error_type": self.detail[0]["type"]}


# The runner went away mid-request, after fal's own queue retries (docs.fal.ai .../request-errors): infrastructure.
RUNNER_DISCONNECTED = Failure(503, "Runner disconnected unexpectedly during processing.", "runner_disconnected")
# The model's code failed (an exception, the GPU out of memory): the generic failure. Some endpoints send no
# X-Fal-Retryable yet (fal's model-errors page says not all follow the format), so this one sends none.
MODEL_CRASH = Failure(500, [entry([], "Internal server error", "internal_server_error")])
