"""Nothing is paid for against a reference whose gate failed (issue: a backfill's page run drew 13 pages against a
rejected hero page). rendering.accepted_references refuses before any request is built."""

from datetime import datetime, timezone

import pytest

from bookbug_assets.layout import GenerationRecord, record_key
from bookbug_assets.quality.verdicts import QualityVerdict, save_verdict
from bookbug_assets.rendering import ReferenceNotAccepted, accepted_references
from bookbug_assets.storage import LocalArtifactStore


def _keep(store, book, target, sha):
    store.write_json(record_key(book, target), GenerationRecord(
        request_key="k", image_key=f"blobs/{sha}.png", image_sha256=sha, provider="preview", model="m", seed=1,
        prompt="p", width=8, height=8, created_at=datetime.now(timezone.utc)).model_dump(mode="json"))


def _verdict(store, book, target, sha, accepted):
    save_verdict(store, QualityVerdict(book_id=book, target=target, passed=accepted, accepted=accepted,
                                       image_sha256=sha, image_key=f"blobs/{sha}.png", provider="preview",
                                       model="m", seed=1, failures=[] if accepted else ["blank: 0.99"]))


def test_a_failed_hero_gate_stops_pages_before_any_request(tmp_path):
    store = LocalArtifactStore(tmp_path)
    _keep(store, "b", "sprite_sheet", "s1")
    _keep(store, "b", "hero_page", "h1")
    _verdict(store, "b", "sprite_sheet", "s1", True)
    _verdict(store, "b", "hero_page", "h1", False)
    with pytest.raises(ReferenceNotAccepted, match="hero_page that failed its quality gate .*blank"):
        accepted_references(store, "b", ("sprite_sheet", "hero_page"))


def test_an_approved_or_redrawn_reference_is_used(tmp_path):
    store = LocalArtifactStore(tmp_path)
    _keep(store, "b", "sprite_sheet", "s1")
    _keep(store, "b", "hero_page", "h2")  # redrawn since the failing verdict on h1
    _verdict(store, "b", "sprite_sheet", "s1", True)
    _verdict(store, "b", "hero_page", "h1", False)
    refs = accepted_references(store, "b", ("sprite_sheet", "hero_page"))
    assert [r.sha256 for r in refs] == ["s1", "h2"]
    _verdict(store, "b", "hero_page", "h2", True)  # approved over the gate: accepted
    assert len(accepted_references(store, "b", ("sprite_sheet", "hero_page"))) == 2


def test_reason_files_of_names_that_differ_only_in_replaced_characters_do_not_collide(tmp_path):
    from bookbug_assets.intake import write_rejection

    paths = {write_rejection(tmp_path, name, f"reason for {name}") for name in ("a b.yaml", "a_b.yaml", "é.yaml",
                                                                                 "è.yaml")}
    assert len(paths) == 4
    assert (tmp_path / "rejected" / "a_b.yaml.reason.txt").read_text() == "reason for a_b.yaml\n"
