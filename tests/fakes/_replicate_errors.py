"""Replicate's error bodies (RFC 7807 problem details, which the client's
ReplicateError.from_response reads: type/title/status/detail/instance).

Validation errors follow the shape Replicate's API gives for JSON-schema
failures: a `detail` with one "- field: description" line per problem plus an
`invalid_fields` list. The wording mirrors gojsonschema, which Replicate's
validator messages resemble; treat the exact texts as approximate.
"""

from __future__ import annotations

from ._http import Response, json_response
from ._schema import Issue, json_type

# Prediction `error` texts of failed predictions (status "failed"), for FakeReplicate.fail_next_predictions.
# Cog's own message when the worker process dies (the OOM killer, a segfault): the generic failure, which says
# nothing about whether a second paid run would fare better (replicate/cog issues #960, #1717).
GENERIC_FAILURE = "Prediction failed for an unknown reason. It might have run out of memory? (exitcode -9)"
# What a torch model raises when the GPU has no room left; Replicate passes the exception text through.
CUDA_OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity; "
            "75.02 GiB already allocated; 1.12 GiB free)")
# Replicate's own text for a prediction whose worker was preempted (replicate/cog-whisper issue #1).
INTERRUPTED = "Prediction interrupted; please retry (code: PA)"

_TYPES = {
    "additional": "additional_property_not_allowed", "required": "required", "type": "invalid_type",
    "enum": "enum", "minimum": "number_gte", "maximum": "number_lte", "max_items": "array_max_items",
    "min_items": "array_min_items", "format": "format",
}


def _describe(issue: Issue) -> tuple[str, str]:
    field = issue.dotted("input")
    if issue.kind == "additional":
        return issue.dotted("input").rsplit(".", 1)[0], f"Additional property {issue.expected} is not allowed"
    if issue.kind == "required":
        return field.rsplit(".", 1)[0], f"{issue.expected} is required"
    if issue.kind == "type":
        return field, f"Invalid type. Expected: {issue.expected}, given: {json_type(issue.value)}"
    if issue.kind == "enum":
        allowed = ", ".join(f'"{v}"' for v in issue.expected)
        return field, f"{field} must be one of the following: {allowed}"
    if issue.kind == "minimum":
        return field, f"Must be greater than or equal to {issue.expected}"
    if issue.kind == "maximum":
        return field, f"Must be less than or equal to {issue.expected}"
    if issue.kind == "max_items":
        return field, f"Array must have at most {issue.expected} items"
    if issue.kind == "min_items":
        return field, f"Array must have at least {issue.expected} items"
    return field, f"Does not match format '{issue.expected}'"


def format_validation_error(issues: list[Issue]) -> dict:
    fields = []
    for issue in issues:
        field, description = _describe(issue)
        fields.append({"type": _TYPES.get(issue.kind, issue.kind), "field": field, "description": description})
    detail = "".join(f"- {f['field']}: {f['description']}\n" for f in fields)
    return {"title": "Input validation failed", "status": 422, "detail": detail, "invalid_fields": fields}


def http_error(status: int, title: str, detail: str, headers: dict | None = None) -> Response:
    return json_response({"title": title, "status": status, "detail": detail}, status, headers)


def not_found(detail: str = "Not found.") -> Response:
    return http_error(404, "Not found", detail)


def unauthenticated() -> Response:
    return http_error(401, "Unauthenticated", "You did not pass a valid authentication token")


def throttled(retry_after_s: int) -> Response:
    return http_error(429, "Too Many Requests",
                      f"Request was throttled. Your rate limit resets in ~{retry_after_s}s.",
                      {"Retry-After": str(retry_after_s)})
