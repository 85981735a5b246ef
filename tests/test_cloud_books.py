"""A whole book through each cloud family's fake, driven by the real clients; secrets never leak."""

import shutil

import pytest

from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.ledger import Ledger
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE
from tests.fakes.fal_server import FakeFal
from tests.fakes.replicate_server import FakeReplicate

# The fakes draw random shapes, not the book's characters in its style: gate only on artifacts.
PLUMBING_ONLY = {"max_style_distance": 1.0, "min_character_similarity": 0.0}
REPLICATE_TOKEN = "r8_SECRET_token_never_logged_0123456789"
FAL_KEY = "fal-key-id:SECRET-fal-secret-never-logged"


def _book(workspace, defs_for, instance, monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BOOKBUG_POLL_INTERVAL_S", "0.05")
    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})
    defs = defs_for()
    results = materialize_book(defs, instance, story, echo=lambda *_: None, thresholds=PLUMBING_ONLY)
    return defs, story, results


def _assert_each_request_paid_once(defs, story, created):
    """Sprite sheet + hero + 12 pages, plus any page the artifact gate sent back for a new seed."""
    rows = Ledger(defs.resources["storage"].store()).rows(story.book_id)
    paid = [r for r in rows if r.status == "ok"]
    assert len(created) >= 14 and len(paid) == len(created)
    assert len({r.request_key for r in paid}) == len(paid), "one request was paid twice"
    assert all(r.cost_usd > 0 for r in paid)


def _assert_no_secret(secret, workspace, instance, results):
    for path in workspace["root"].rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"secret leaked into {path}"
    for result in results.values():
        for event in instance.all_logs(result.run_id):
            assert secret not in str(event), "secret leaked into the event log"


@pytest.mark.parametrize("model", ["google/nano-banana-pro", "black-forest-labs/flux-kontext-pro"])
def test_whole_book_through_replicate(model, workspace, defs_for, instance, monkeypatch):
    with FakeReplicate(api_token=REPLICATE_TOKEN, output_mode="data", output_scale=1.0) as fake:
        defs, story, results = _book(workspace, defs_for, instance, monkeypatch, {
            "REPLICATE_API_TOKEN": REPLICATE_TOKEN, "BOOKBUG_PROVIDER": f"replicate:{model}",
            "BOOKBUG_REPLICATE_BASE_URL": fake.url})
        assert all(r.success for r in results.values())
        created = [p for p in fake.created_predictions if p["model"] == model]
        _assert_each_request_paid_once(defs, story, created)
        _assert_no_secret(REPLICATE_TOKEN, workspace, instance, results)

        again = materialize_book(defs, instance, story, echo=lambda *_: None, thresholds=PLUMBING_ONLY)
        assert all(r.success for r in again.values())
        assert len([p for p in fake.created_predictions if p["model"] == model]) == len(created), "paid twice"


def test_whole_book_through_fal(workspace, defs_for, instance, monkeypatch):
    with FakeFal(fal_key=FAL_KEY, output_scale=1.0) as fake:
        fake.patch_client(monkeypatch)
        defs, story, results = _book(workspace, defs_for, instance, monkeypatch, {
            "FAL_KEY": FAL_KEY, "BOOKBUG_PROVIDER": "fal:fal-ai/flux-pro/kontext"})
        assert all(r.success for r in results.values())
        _assert_each_request_paid_once(defs, story, fake.submitted)
        _assert_no_secret(FAL_KEY.split(":")[1], workspace, instance, results)


def test_budget_stops_a_book(workspace, defs_for, instance, monkeypatch):
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text())
    data["budget_usd"] = 0.50  # nano-banana-pro at $0.15: sprite + hero + one page
    with FakeReplicate(api_token=REPLICATE_TOKEN, output_mode="data", output_scale=1.0) as fake:
        for name, value in {"REPLICATE_API_TOKEN": REPLICATE_TOKEN, "BOOKBUG_PROVIDER": "replicate",
                            "BOOKBUG_REPLICATE_BASE_URL": fake.url, "BOOKBUG_MAX_CONCURRENCY": "1"}.items():
            monkeypatch.setenv(name, value)
        (workspace["stories"] / "budget.yaml").write_text(yaml.safe_dump(data))
        story = load_story_file(workspace["stories"] / "budget.yaml", {"soft-meadow"})
        defs = defs_for()
        results = materialize_book(defs, instance, story, echo=lambda *_: None, raise_on_error=False,
                                   thresholds=PLUMBING_ONLY)
        assert not results["pages"].success
        spent = Ledger(defs.resources["storage"].store()).spent(story.book_id)
        assert spent <= 0.50 + 1e-9
        assert len(fake.created_predictions) == 3


def test_a_429_storm_slows_the_book_but_pays_each_image_once(workspace, defs_for, instance, monkeypatch):
    """Creates are refused with 429 a dozen times running; the book still finishes, each image paid once."""
    with FakeReplicate(api_token=REPLICATE_TOKEN, output_mode="data", output_scale=1.0) as fake:
        fake.retry_after_s = 0
        fake.fail_next_creates = [429] * 12
        monkeypatch.setattr("bookbug_assets.generation.RetryPolicy.delay", lambda self, a, r, rng: 0.01)
        defs, story, results = _book(workspace, defs_for, instance, monkeypatch, {
            "REPLICATE_API_TOKEN": REPLICATE_TOKEN, "BOOKBUG_PROVIDER": "replicate:black-forest-labs/flux-kontext-pro",
            "BOOKBUG_REPLICATE_BASE_URL": fake.url, "BOOKBUG_MAX_ATTEMPTS": "15"})
        assert all(r.success for r in results.values())
        creates = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/predictions")]
        assert len(creates) == 12 + len(fake.created_predictions)
        _assert_each_request_paid_once(defs, story, fake.created_predictions)
