"""What `bookbug` says when something fails: one line a user can act on, on stderr, never a traceback.

Errors come two ways: raised here (a story that is refused, a folder that cannot be written, a missing setting) or
recorded in a run that failed (the run is kept in the instance, so the line points at it). Both are described by
the same table of exception class names, since a run records its errors as names and messages, not objects.
`--debug` (or BOOKBUG_DEBUG=1) shows the traceback and Dagster's own log as it is.
"""

from __future__ import annotations

import builtins
import contextlib
import sys
import warnings
from dataclasses import dataclass

import dagster as dg

from bookbug_assets.input_files import shown

MAX_LINE_CHARS = 2000  # a page failure lists its pages; beyond this the run's log in the UI has the rest
MAX_CHECKS_SHOWN = 3

# A message of these says what to do already (the project's own errors, Dagster's Failure raised with one).
_SELF_EXPLAINED = {"Failure", "CliError", "StoryError", "InputFileError", "ReviewError", "StyleError", "StoryNotFound",
                   "MissingStyle", "ConfigurationError", "NotMaterialized", "ReferenceNotAccepted", "LoraSourceError",
                   "BudgetExceeded", "LifecycleError"}
_OS_ERRORS = {name for name in dir(builtins) if isinstance(getattr(builtins, name), type)
              and issubclass(getattr(builtins, name), OSError)}
_S3_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ProxyConnectionError",
                   "SSLError"}
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}


class CliError(Exception):
    """A failure the command has already put in words (one line)."""


@dataclass(frozen=True)
class Where:
    """The settings a hint names: where artifacts go."""

    data_root: str = "data/outputs"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None


def one_line(text: str) -> str:
    """`text` as one printable line: its lines joined ("x:" + "y" -> "x: y"; "x" + "y" -> "x; y"), escaped."""
    out = ""
    for line in (part.strip() for part in str(text).splitlines()):
        if not line:
            continue
        out += line if not out else (f" {line}" if out.endswith(":") else f"; {line}")
    out = shown(out)
    return out if len(out) <= MAX_LINE_CHARS else out[:MAX_LINE_CHARS - 1] + "\u2026"


def describe(name: str, message: str, where: Where) -> str:
    """One line for an exception of class `name` with `message` (its str, or a run's recorded message)."""
    head, _, rest = message.partition(": ")
    if head == name or head.endswith(f".{name}"):  # a run records "botocore.exceptions.NoCredentialsError: ..."
        message = rest
    message = one_line(message)
    bucket = f"BOOKBUG_S3_BUCKET={where.s3_bucket}"
    if name in _NO_CREDENTIALS:
        return (f"{bucket}: no AWS credentials found ({message}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE), or unset BOOKBUG_S3_BUCKET to keep artifacts in BOOKBUG_DATA_ROOT")
    if name in _S3_UNREACHABLE:
        endpoint = where.s3_endpoint_url or "AWS's default"
        return (f"{bucket}: cannot reach S3 at {endpoint} ({message}); check BOOKBUG_S3_ENDPOINT_URL and the "
                "network, or unset BOOKBUG_S3_BUCKET")
    if name == "ClientError":
        return f"{bucket}: S3 refused the request ({message}); check the bucket name and what the credentials may do"
    if name == "DagsterHomeNotSetError":
        return "DAGSTER_HOME is not set: mkdir -p .dagster_home && export DAGSTER_HOME=$PWD/.dagster_home (make does)"
    if name in _OS_ERRORS:
        root = where.data_root.rstrip("/")
        if not where.s3_bucket and root and root in message:
            return (f"BOOKBUG_DATA_ROOT={where.data_root}: cannot write the artifacts there ({message}); set "
                    "BOOKBUG_DATA_ROOT to a folder you can write")
        return f"{message} ({name})"
    if name == "RecursionError":
        return "input nested too deeply to process (RecursionError); run `bookbug validate` on the story and style"
    if name in _SELF_EXPLAINED:
        return message
    return f"{name}: {message} (run again with --debug for the traceback)"


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, outermost first (each cause once)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return seen


def _is_wrapper(name: str) -> bool:
    """Dagster's envelopes around the user's exception; their own message is not the cause."""
    return name.startswith("Dagster") and name not in ("DagsterHomeNotSetError", "DagsterAssetCheckFailedError")


def exception_line(exc: BaseException, where: Where) -> str:
    if isinstance(exc, dg.DagsterInvariantViolationError) and "DAGSTER_HOME" in str(exc):
        return one_line(f"{exc}; mkdir -p it, or export DAGSTER_HOME=$PWD/.dagster_home")
    chain = _chain(exc)
    inner = next((e for e in chain if not _is_wrapper(type(e).__name__)), chain[-1])
    if isinstance(inner, OSError) and inner.filename is not None:
        text = f"{inner.strerror or inner}: {inner.filename}"
        return describe(next(c.__name__ for c in type(inner).__mro__ if c.__name__ in _OS_ERRORS), text, where)
    return describe(type(inner).__name__, str(inner), where)


def _error_chain(error) -> list:
    """A run's recorded error (SerializableErrorInfo) and its causes, outermost first."""
    chain = []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.cause or error.context
    return chain


def run_failure_line(result: dg.ExecuteInProcessResult, label: str, book_id: str, where: Where) -> str:
    """Why a book's run failed, from what the run recorded: the failed gate, the Failure's words, the cause."""
    run = f"see run {result.run_id[:8]} in the UI (make ui)"
    failed_checks = [e for e in result.get_asset_check_evaluations()
                     if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    lines = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        user = data.user_failure_data
        chain = _error_chain(data.error)
        inner = next((e for e in chain if not _is_wrapper(e.cls_name or "")), chain[-1] if chain else None)
        if user is not None and user.description:
            lines.append(one_line(user.description))
        elif inner is not None and inner.cls_name == "DagsterAssetCheckFailedError" and failed_checks:
            lines.append(_gate_line(failed_checks))
        elif inner is not None:
            lines.append(describe(inner.cls_name or "Exception", inner.message or "", where))
    if not lines and failed_checks:
        lines.append(_gate_line(failed_checks))
    if not lines:
        lines.append(f"the {label} run did not succeed ({result.dagster_run.status.value})")
    return one_line(f"{book_id}: {label} failed: {'; '.join(dict.fromkeys(lines))}; {run}")


def _gate_line(failed: list) -> str:
    parts = []
    for evaluation in failed[:MAX_CHECKS_SHOWN]:
        what = evaluation.description or f"{evaluation.check_name} failed"
        if "quality gate" not in what:
            what = f"{evaluation.asset_key.to_user_string()} failed its quality gate ({evaluation.check_name}): {what}"
        parts.append(what)
    if len(failed) > MAX_CHECKS_SHOWN:
        parts.append(f"and {len(failed) - MAX_CHECKS_SHOWN} more")
    return "; ".join(parts) + " (approve it in a review file or tune the gate: README, Quality gates)"


def print_run_tracebacks(result: dg.ExecuteInProcessResult, stream=None) -> None:
    """--debug: each failed step's recorded traceback, as the run's log has it."""
    for event in result.get_step_failure_events():
        print(event.step_failure_data.error.to_string(), file=stream or sys.stderr)


class _NoTracebacks:
    """A stream that passes log records on without the "Stack Trace:" part Dagster's console log appends to an
    error: the CLI's own last line says what failed, and the run's log in the UI keeps the traceback."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        cut = text.find("\nStack Trace:")
        self._stream.write(text if cut < 0 else text[:cut].rstrip("\n") + "\n")
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def user_output(debug: bool):
    """While a command runs: Dagster's log and warnings go to stdout without tracebacks, stderr keeps only the
    command's error line. With `debug`, everything is shown as Dagster writes it."""
    if debug:
        yield
        return
    with warnings.catch_warnings():
        # Dagster's notes that an API the project uses is in preview or beta: about Dagster, not the user's book.
        for category in (dg.PreviewWarning, dg.BetaWarning, dg.SupersessionWarning):
            warnings.simplefilter("ignore", category)
        with contextlib.redirect_stderr(_NoTracebacks(sys.stdout)):
            yield
