"""quality_judge's one log line per run: said once per run, and the runs remembered for it stay few in a process
that lives for days (the daemon's code server)."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import pytest

from bookbug_assets.defs import judge_resource
from bookbug_assets.defs.judge_resource import NO_JUDGE, QualityJudge


class _Context:
    """What for_run reads of a Dagster context: the run's id and its log."""

    def __init__(self, run_id: str, said: list[tuple[str, str]]):
        self.run = SimpleNamespace(run_id=run_id)
        self.log = SimpleNamespace(info=lambda message: said.append((run_id, message)))


@pytest.fixture
def announced(monkeypatch):
    """A fresh memory of announced runs, holding at most three."""
    monkeypatch.setattr(judge_resource, "ANNOUNCED_RUNS", 3)
    monkeypatch.setattr(judge_resource, "_ANNOUNCED", OrderedDict())
    return judge_resource._ANNOUNCED


def test_each_run_is_told_which_judge_once(announced):
    said: list[tuple[str, str]] = []
    judge = QualityJudge()
    for run_id in ("run-a", "run-a", "run-b", "run-a"):
        assert judge.for_run(_Context(run_id, said)) is None
    assert said == [("run-a", NO_JUDGE), ("run-b", NO_JUDGE)]


def test_only_the_latest_runs_are_remembered(announced):
    said: list[tuple[str, str]] = []
    judge = QualityJudge()
    for n in range(50):  # a long-lived code server: run after run
        judge.for_run(_Context(f"run-{n}", said))
        judge.for_run(_Context("run-0", said))  # a run still stepping is asked about again and again
    assert len(announced) == 3
    assert list(announced) == ["run-48", "run-49", "run-0"]  # the one still asking is kept, the oldest go
    assert [message for run_id, message in said if run_id == "run-0"] == [NO_JUDGE]  # told once
    assert len(said) == 50
