"""The example book materialized in-process on a throwaway instance, then again from cache."""

import shutil

import pytest
from pypdf import PdfReader

from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.layout import style_profile_key
from bookbug_assets.ledger import Ledger
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE

POINTS = 72


@pytest.fixture
def rendered(workspace, defs_for, instance):
    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    defs = defs_for()
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})
    results = materialize_book(defs, instance, story, echo=lambda *_: None)
    return defs, story, results


def test_every_asset_materializes_and_the_pdf_is_print_ready(rendered, workspace, instance):
    defs, story, results = rendered
    assert all(r.success for r in results.values())
    page_events = results["pages"].get_asset_materialization_events()
    assert sorted(e.partition for e in page_events) == [f"{story.book_id}|{k}" for k in story.page_keys]
    metadata = page_events[0].materialization.metadata
    for field in ("preview", "provider", "model", "seed", "cost_usd", "cache_hit", "text"):
        assert field in metadata, field
    materialized = {k.to_user_string() for k in instance.get_asset_keys()}
    assert {"style_dataset", "style_lora", "story", "sprite_sheet", "hero_page", "book_pages", "book_pdf",
            "generation_ledger"} <= materialized

    pdf = PdfReader(workspace["outputs"] / "books" / story.book_id / f"{story.book_id}.pdf")
    assert len(pdf.pages) == 13  # cover + 12
    for page in pdf.pages:
        assert float(page.mediabox.width) == pytest.approx(8.75 * POINTS)
        assert float(page.mediabox.height) == pytest.approx(8.75 * POINTS)
        assert float(page.trimbox.left) == pytest.approx(0.125 * POINTS)
        for image in page.images:
            # 300 DPI across the full-bleed width
            assert image.image.width >= 8.75 * 300 - 1
    text = " ".join(" ".join(p.extract_text().split()) for p in pdf.pages)
    assert "At the edge of the meadow lived a little mouse called Pip." in text
    assert "PREVIEW" in text or "PREVIEW" in (pdf.metadata.title or "")
    (preflight,) = results["finish"].get_asset_check_evaluations()
    assert preflight.passed and "watermarked PREVIEW: not for print" in preflight.description


def test_second_materialization_is_all_cache_hits_and_free(rendered, instance):
    defs, story, first = rendered
    ledger = Ledger(defs.resources["storage"].store())
    before = len(ledger.rows(story.book_id))
    again = materialize_book(defs, instance, story, echo=lambda *_: None)
    new_rows = ledger.rows(story.book_id)[before:]
    assert len(new_rows) == 14  # sprite sheet + hero + 12 pages
    assert all(r.cache_hit and r.cost_usd == 0 for r in new_rows)
    assert not any(r.status == "ok" for r in new_rows)
    assert all(r.success for r in again.values())
    # the style folder did not change, so its run is not repeated; the book's runs are references, pages, finish
    assert list(first) == ["style", "references", "pages", "finish"] and list(again) == ["references", "pages", "finish"]
    # unchanged pages say so in one line, not one stored event each
    said = [e.user_message for e in instance.all_logs(again["pages"].run_id) if not e.is_dagster_event]
    assert [m for m in said if "page(s) unchanged" in m] == [f"{story.book_id}: 12 of 12 page(s) unchanged, kept "
                                                             "from the cache and accepted ($0)"]
    assert not [m for m in said if "passed on its first attempt" in m]
    first_said = [e.user_message for e in instance.all_logs(first["pages"].run_id) if not e.is_dagster_event]
    assert len([m for m in first_said if "passed on its first attempt" in m]) == 12


@pytest.mark.parametrize("change", ["caption", "gate limit", "profile gone"])
def test_a_style_runs_again_when_its_folder_or_its_stored_profile_changed(rendered, workspace, instance, change):
    defs, story, _ = rendered
    style_dir = workspace["styles"] / "soft-meadow"
    if change == "caption":
        caption = sorted((style_dir / "images").glob("*.txt"))[0]
        caption.write_text(caption.read_text() + " with a red kite")
    elif change == "gate limit":  # not part of the dataset's hash, but of the calibration the dataset run stores
        (style_dir / "style.yaml").write_text((style_dir / "style.yaml").read_text() + "quality: {max_clipping: 0.5}\n")
    else:
        store = defs.resources["storage"].store()
        store.delete(style_profile_key("soft-meadow"))
    again = materialize_book(defs, instance, story, echo=lambda *_: None)
    assert list(again)[0] == "style" and again["style"].success


def test_a_page_slot_past_the_end_of_the_book_fails_loudly(rendered, instance):
    import dagster as dg

    defs, story, _ = rendered
    instance.add_dynamic_partitions("page_slots", ["013"])
    from bookbug_assets.defs.book_runs import _assets

    result = dg.materialize(_assets(defs, "book_pages"), instance=instance, resources=dict(defs.resources),
                            partition_key=f"{story.book_id}|013", raise_on_error=False)
    assert not result.success
    assert "past the end" in str(result.all_events)


def test_a_page_rejected_in_review_is_never_printed_until_redrawn(rendered, workspace, instance):
    import dagster as dg

    from bookbug_assets.defs.book_runs import _assets
    from bookbug_assets.review import apply_review_file

    defs, story, _ = rendered
    review = workspace["root"] / f"{story.book_id}.yaml"
    review.write_text(f"book_id: {story.book_id}\npages:\n  3: {{decision: reject, note: the scarf is red}}\n")
    apply_review_file(review, defs.resources["storage"].store())
    result = dg.materialize(_assets(defs, "book_pdf"), instance=instance, resources=dict(defs.resources),
                            partition_key=story.book_id, raise_on_error=False)
    assert not result.success
    assert "page-003 (rejected in review)" in str(result.all_events)


def test_book_pdf_refuses_pages_drawn_for_an_earlier_story(rendered, workspace, instance):
    import dagster as dg
    import yaml

    from bookbug_assets.defs.book_runs import _assets

    defs, story, _ = rendered
    path = workspace["stories"] / EXAMPLE.name
    data = yaml.safe_load(path.read_text())
    data["pages"][2]["scene"] = "Pip climbs the old oak in the rain."  # page 3 must be drawn again
    path.write_text(yaml.safe_dump(data))
    # Only the story is materialized again: every page record is now from the earlier version.
    dg.materialize(_assets(defs, "story"), instance=instance, resources=defs.resources, partition_key=story.book_id)
    with pytest.raises(Exception, match="drawn for an earlier version of the story"):
        dg.materialize(_assets(defs, "book_pdf"), instance=instance, resources=defs.resources,
                       partition_key=story.book_id)
    results = materialize_book(defs, instance, load_story_file(path, {"soft-meadow"}), echo=lambda *_: None,
                               include_style=False)
    assert all(r.success for r in results.values())  # pages redrawn (page 3) or re-stamped (the rest, free)
