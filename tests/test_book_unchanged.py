"""An unchanged book is not run again by `bookbug book` (issue 13: its three runs cost a fifth of a first run to
find every image cached); anything its runs would read changing runs it (defs/book_inputs.py)."""

import dagster as dg
import pytest

from bookbug_assets.defs import book_inputs
from bookbug_assets.defs.book_inputs import INPUTS_TAG, STAGE_TAG, book_inputs_sha256, sources_sha256
from bookbug_assets.defs.book_runs import _assets, materialize_book
from bookbug_assets.defs.resources import ImageProviders
from bookbug_assets.layout import load_page_records, page_partition
from bookbug_assets.stories import load_story_file
from tests.test_cli import env, run, story_text  # noqa: F401 - env is a fixture

STAGES = ["references", "pages", "finish"]


@pytest.fixture
def book(workspace, defs_for, instance):
    path = workspace["stories"] / "unchanged.yaml"
    path.write_text(story_text("unchanged", pages=2))
    defs = defs_for()
    story = load_story_file(path, {"soft-meadow"})
    first = materialize_book(defs, instance, story, echo=lambda *_: None, if_changed=True)
    assert list(first) == ["style", *STAGES] and all(r.success for r in first.values())
    return defs, story


def _runs(instance) -> int:
    return len(instance.get_run_records())


def test_an_unchanged_book_runs_nothing_and_says_so(book, instance):
    defs, story = book
    said = []
    before = _runs(instance)
    assert materialize_book(defs, instance, story, echo=said.append, if_changed=True) == {}
    assert _runs(instance) == before
    assert any("unchanged since its last runs" in line and "nothing run" in line for line in said), said
    # Each of the book's runs carries its stage and the inputs' hash, which the check reads.
    tagged = {r.dagster_run.tags.get(STAGE_TAG): r.dagster_run.tags.get(INPUTS_TAG)
              for r in instance.get_run_records()}
    assert set(tagged) == {"style", *STAGES} and len({tagged[s] for s in STAGES}) == 1

    # Without if_changed (the sensor's and regenerate's way) the runs are made, all cache hits.
    again = materialize_book(defs, instance, story, echo=lambda *_: None)
    assert list(again) == STAGES and all(r.success for r in again.values())


def test_other_gate_limits_run_the_book(book, instance):
    defs, story = book
    changed = materialize_book(defs, instance, story, echo=lambda *_: None, if_changed=True,
                               thresholds={"min_blur": 30.0})
    assert list(changed) == STAGES
    # ... and with those limits again it is unchanged; back to the book's own limits it runs again.
    assert materialize_book(defs, instance, story, echo=lambda *_: None, if_changed=True,
                            thresholds={"min_blur": 30.0}) == {}
    assert list(materialize_book(defs, instance, story, echo=lambda *_: None, if_changed=True)) == STAGES


def test_a_page_another_run_made_since_runs_the_book(book, instance):
    defs, story = book
    dg.materialize(_assets(defs, "book_pages"), instance=instance, resources=dict(defs.resources),
                   partition_key=page_partition(story.book_id, story.page_keys[0]))
    assert list(materialize_book(defs, instance, story, echo=lambda *_: None, if_changed=True)) == STAGES
    assert materialize_book(defs, instance, story, echo=lambda *_: None, if_changed=True) == {}


def test_a_missing_image_or_pdf_runs_the_book(book, instance):
    defs, story = book
    store = defs.resources["storage"].store()
    page = next(iter(load_page_records(store, story).values()))
    store.local_path(page.image_key).unlink()
    assert list(materialize_book(defs, instance, story, echo=lambda *_: None, if_changed=True)) == STAGES
    assert store.exists(page.image_key)  # the cache put it back


def test_a_retry_of_refused_requests_always_runs(book, instance):
    defs, story = book
    ran = materialize_book(defs, instance, story, echo=lambda *_: None, if_changed=True,
                           tags={"bookbug/retry_refused": "true"})
    assert list(ran) == STAGES


def test_the_hash_follows_settings_and_never_holds_a_secret(book, monkeypatch):
    defs, story = book
    resources = dict(defs.resources)
    tags = {"bookbug/book": story.book_id}
    base = book_inputs_sha256(resources, story, tags, None)
    assert book_inputs_sha256(resources, story, tags, None) == base
    assert book_inputs_sha256(resources, story, {**tags, "bookbug/story_sha256": "x"}, None) != base
    assert book_inputs_sha256(resources, story.model_copy(update={"title": "Other"}), tags, None) != base
    monkeypatch.setenv("BOOKBUG_REQUIRE_APPROVAL", "1")
    assert book_inputs_sha256(resources, story, tags, None) != base
    monkeypatch.delenv("BOOKBUG_REQUIRE_APPROVAL")

    other_model = {**resources, "image_providers": ImageProviders(default="preview:other")}
    assert book_inputs_sha256(other_model, story, tags, None) != base
    # A token counts as set or unset: another value of it hashes the same, and the value is never hashed.
    with_token = {**resources, "image_providers": ImageProviders(replicate_api_token="r8_secret_one")}
    other_token = {**resources, "image_providers": ImageProviders(replicate_api_token="r8_secret_two")}
    assert book_inputs_sha256(with_token, story, tags, None) == book_inputs_sha256(other_token, story, tags, None)
    assert book_inputs_sha256(with_token, story, tags, None) != base
    assert "r8_secret" not in repr(book_inputs._resources(with_token))
    from_env = {**resources, "image_providers": ImageProviders(replicate_api_token=dg.EnvVar("BOOKBUG_TEST_TOKEN"))}
    unset = book_inputs_sha256(from_env, story, tags, None)
    monkeypatch.setenv("BOOKBUG_TEST_TOKEN", "r8_secret_three")
    assert book_inputs_sha256(from_env, story, tags, None) != unset
    assert "r8_secret" not in repr(book_inputs._resources(from_env)) + repr(book_inputs._environment())


def test_the_code_hash_follows_every_source_file(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "gate.py").write_text("LIMIT = 1\n")
    (tmp_path / "pkg" / "models.yaml").write_text("a: 1\n")
    before = sources_sha256(tmp_path)
    (tmp_path / "pkg" / "gate.py").write_text("LIMIT = 2\n")
    changed = sources_sha256(tmp_path)
    assert changed != before
    (tmp_path / "pkg" / "models.yaml").write_text("a: 2\n")
    data_changed = sources_sha256(tmp_path)
    assert data_changed != changed
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    assert sources_sha256(tmp_path) == data_changed


def test_bookbug_book_leaves_an_unchanged_book_alone_unless_forced(env, capsys):
    path = env["stories"] / "cli-unchanged.yaml"
    path.write_text(story_text("cli-unchanged", pages=2))
    code, out, err = run(capsys, "book", str(path))
    assert code == 0 and "[bookbug] cli-unchanged: pages done" in out, err
    code, out, err = run(capsys, "book", str(path))
    assert code == 0 and "nothing run (--force runs it anyway)" in out and "pages (" not in out, err
    assert "[bookbug] 0 new generation(s), 0 cache hit(s), $0.00" in out and "[bookbug] PDF: " in out
    code, out, err = run(capsys, "book", str(path), "--force")
    assert code == 0 and "[bookbug] 0 new generation(s), 4 cache hit(s), $0.00" in out, out  # 2 references + 2
    path.write_text(story_text("cli-unchanged", pages=2, title="A New Title"))
    code, out, err = run(capsys, "book", str(path))
    assert code == 0 and "[bookbug] cli-unchanged: finish done" in out, err
