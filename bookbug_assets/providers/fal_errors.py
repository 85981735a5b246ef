"""How a fal request that ran has failed (providers/fal.py, for the result of a finished request): fal's error
payloads put into words and sorted into failures worth a new request, one more, or none."""

from __future__ import annotations

from typing import Any

from fal_client import FalClientHTTPError

from bookbug_assets.providers.base import JobFailed

CONTENT_POLICY = "content_policy_violation"
# A request that ran and failed answers its result URL with one of fal's two error dialects
# (https://fal.ai/docs/documentation/model-apis/errors, .../request-errors). Infrastructure failures (request errors,
# typically 503/504: the runner could not be scheduled, disconnected, timed out) come after fal's queue has already
# retried the request on new runners, and 5xx failures are not billed
# (https://docs.fal.ai/model-apis/model-endpoints/reliability): a new request may well succeed. A model error says
# whether retrying can help in its X-Fal-Retryable header; without one, a 5xx is a generic failure (worth one more
# request) and a 4xx is the input's fault (worth none).
INFRA_ERRORS = frozenset({"request_timeout", "startup_timeout", "runner_scheduling_failure",
                          "runner_connection_timeout", "runner_disconnected", "runner_connection_refused",
                          "runner_connection_error", "runner_incomplete_response", "internal_error",
                          "downstream_service_unavailable"})


def job_failure(provider: str, message: str, status: int, exc: FalClientHTTPError, entries: list) -> JobFailed:
    """How a request that ran has failed, from fal's error payload (see INFRA_ERRORS)."""
    headers = {k.lower(): v for k, v in (exc.response_headers or {}).items()}
    retryable = str(headers.get("x-fal-retryable", "")).strip().lower()
    kinds = {exc.error_type} | {e.get("type") for e in entries if isinstance(e, dict)}
    billed = status < 500  # "5xx failures are not billed" (fal's reliability page, cited above)
    if retryable in ("true", "1", "yes") or (retryable == "" and kinds & INFRA_ERRORS):
        return JobFailed(provider, message, transient=True, status=status, billed=billed)
    if retryable in ("false", "0", "no") or status < 500:
        return JobFailed(provider, message, retries=0, status=status, billed=billed)
    return JobFailed(provider, message, retries=1, status=status, billed=billed)


def describe(message: Any) -> str:
    """fal's detail is text, or a list of {loc, msg, type} entries for model errors."""
    if isinstance(message, list):
        parts = []
        for e in message:
            if isinstance(e, dict):
                loc = ".".join(str(p) for p in (e.get("loc") or [])[1:])
                parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
            else:
                parts.append(str(e))
        return "; ".join(parts)
    return str(message)
