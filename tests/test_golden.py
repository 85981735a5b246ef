"""Golden books: the first run becomes the baseline; a drop beyond the threshold fails naming pages."""

import pytest
import yaml

from bookbug_assets.defs.golden.jobs import golden_books_job
from bookbug_assets.golden import baseline_key, compare
from tests.conftest import EXAMPLE


@pytest.fixture
def golden(workspace, defs_for):
    folder = workspace["root"] / "golden"
    folder.mkdir()
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(book_id="tiny", pages=data["pages"][:2])
    (folder / "tiny.yaml").write_text(yaml.safe_dump(data))
    return defs_for(), folder


def run(defs, instance, folder, **config):
    return golden_books_job.execute_in_process(
        instance=instance, resources=defs.resources, raise_on_error=False,
        run_config={"ops": {"golden_regression": {"config": {"stories_dir": str(folder), **config}}}})


def test_golden_run_becomes_the_baseline_and_a_drop_fails_naming_the_page(golden, instance):
    defs, folder = golden
    store = defs.resources["storage"].store()
    first = run(defs, instance, folder)
    assert first.success
    baseline = store.read_json(baseline_key("preview"))
    assert sorted(baseline["books"]["golden-tiny"]) == ["page-001", "page-002"]
    assert "golden-tiny" in instance.get_dynamic_partitions("books")  # rendered through the real assets

    assert run(defs, instance, folder).success  # unchanged: all cache hits, same scores

    # Pretend the accepted run was better on page 2 than this one can be.
    baseline["books"]["golden-tiny"]["page-002"]["style_distance"] = 0.0
    store.write_json(baseline_key("preview"), baseline)
    regressed = run(defs, instance, folder, max_drop=0.05)
    assert not regressed.success
    failure = next(e for e in regressed.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "golden-tiny page 2: style_distance 0.000 ->" in message and "page 1" not in message
    assert store.read_json(baseline_key("preview"))["books"]["golden-tiny"]["page-002"]["style_distance"] == 0.0

    assert run(defs, instance, folder, max_drop=0.05, accept=True).success  # bless the change
    assert store.read_json(baseline_key("preview"))["books"]["golden-tiny"]["page-002"]["style_distance"] > 0.0


def test_compare_names_missing_and_newly_failing_pages():
    before = {"b": {"page-001": {"passed": True, "style_distance": 0.1, "character_similarity": 0.8},
                    "page-002": {"passed": True, "style_distance": 0.1}}}
    after = {"b": {"page-001": {"passed": False, "style_distance": 0.12, "character_similarity": 0.5}}}
    problems = compare(before, after, max_drop=0.1)
    assert problems == ["b page 1: passed its quality gate before, fails now",
                        "b page 1: character_similarity 0.800 -> 0.500 (worse by 0.300 > 0.1)",
                        "b page 2: not rendered this time"]


def test_no_golden_stories_is_a_clear_failure(workspace, defs_for, instance):
    result = run(defs_for(), instance, workspace["root"] / "nowhere")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no golden stories in" in failure.event_specific_data.error.message
