"""The one-line descriptions `bookbug` prints for what a run recorded: real Dagster runs of tiny assets that fail
the way a book's steps do (a folder that cannot be written, S3 without credentials, a Failure, a blocking gate)."""

import io
import sys

import dagster as dg
import pytest
from botocore.exceptions import NoCredentialsError

from bookbug_assets.cli.errors import Where, _NoTracebacks, exception_line, one_line, run_failure_line


def failed_run(*assets) -> dg.ExecuteInProcessResult:
    result = dg.materialize(list(assets), instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    return result


@dg.asset
def writes_blobs():
    open("/proc/blobs/x.png", "wb")


@dg.asset
def reads_s3():
    raise NoCredentialsError()


@dg.asset
def fails_in_words():
    raise dg.Failure("2 page(s) failed; the others are kept:\nbook page 3: timed out\nbook page 5: refused")


@dg.asset
def recurses():
    def down(n):
        return down(n + 1)
    down(0)


@dg.asset
def sheet():
    return 1


@dg.asset_check(asset=sheet, blocking=True)
def sheet_quality():
    return dg.AssetCheckResult(passed=False, description="sprite_sheet failed (attempt 3 of 3): clipped: 0.33 > 0.05")


@dg.asset(check_specs=[dg.AssetCheckSpec("page_quality", asset="pages", blocking=True)])
def pages():
    # As book_pages reports a page's gate: its evaluation says which page and why.
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="page_quality", passed=False, severity=dg.AssetCheckSeverity.ERROR,
                              description="page 3 failed its quality gate (see its page_quality check): blurred")


@pytest.mark.parametrize(("assets", "words"), [
    ((writes_blobs,), ["BOOKBUG_DATA_ROOT=/proc", "cannot write", "/proc/blobs"]),
    ((reads_s3,), ["BOOKBUG_S3_BUCKET=books", "no AWS credentials", "AWS_ACCESS_KEY_ID"]),
    ((fails_in_words,), ["2 page(s) failed; the others are kept: book page 3: timed out; book page 5: refused"]),
    ((recurses,), ["RecursionError"]),
    ((sheet, sheet_quality), ["sprite_sheet failed (attempt 3 of 3): clipped", "failed its quality gate"]),
    ((pages,), ["page 3 failed its quality gate (see its page_quality check): blurred"]),
])
def test_what_a_failed_run_recorded_becomes_one_line(assets, words):
    where = Where(data_root="/proc", s3_bucket="books" if assets == (reads_s3,) else None)
    line = run_failure_line(failed_run(*assets), "pages", "a-book", where)
    assert "\n" not in line and "Traceback" not in line and "File \"" not in line, line
    assert line.startswith("a-book: pages failed: ") and line.endswith("in the UI (make ui)"), line
    assert all(w in line for w in words), line
    assert line.count("failed its quality gate") <= 1, line


def test_an_exception_raised_here_is_described_by_its_cause():
    try:
        try:
            open("/proc/blobs/x", "wb")
        except OSError as inner:
            raise dg.DagsterExecutionStepExecutionError("Error occurred while executing op", user_exception=inner,
                                                        original_exc_info=sys.exc_info(), step_key="s", op_name="s",
                                                        op_def_name="s") from inner
    except Exception as exc:  # noqa: BLE001
        line = exception_line(exc, Where(data_root="/proc"))
    assert line.startswith("BOOKBUG_DATA_ROOT=/proc: cannot write") and "/proc/blobs/x" in line, line
    assert exception_line(RecursionError("maximum recursion depth exceeded"), Where()).startswith("input nested")
    assert "--debug" in exception_line(ZeroDivisionError("division by zero"), Where())


def test_one_line_joins_lines_and_escapes_what_does_not_print():
    assert one_line("3 failed:\n a\n\n b\x1b[31m") == "3 failed: a; b\\x1b[31m"


def test_the_run_log_stream_drops_dagster_tracebacks():
    out = io.StringIO()
    stream = _NoTracebacks(out)
    stream.write("2026 - ERROR - STEP_FAILURE - Execution of step failed.\n\nFailure: no key\n\nStack Trace:\n"
                 "  File \"x.py\", line 1, in f\n    raise\n")
    stream.write("2026 - INFO - page 1 passed\n")
    assert out.getvalue() == "2026 - ERROR - STEP_FAILURE - Execution of step failed.\n\nFailure: no key\n" \
                             "2026 - INFO - page 1 passed\n"


def test_a_lifecycle_refusal_is_its_own_words():
    from bookbug_assets.lifecycle import LifecycleError

    line = exception_line(LifecycleError("book 'b' is archived: it cannot be delivered (restore it first)"), Where())
    assert line == "book 'b' is archived: it cannot be delivered (restore it first)"
