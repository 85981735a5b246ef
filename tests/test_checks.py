"""Quality gates: planted bad images fail, good ones and preview renders pass; regeneration and budget.

PlantedProvider draws procedural characters (quality.synthetic) so a test can decide, page by page
and attempt by attempt, whether a page comes out good, blank, blurred, off-palette or showing the
wrong character. The other quality test files import it from here.
"""

import io

import dagster as dg
import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter, ImageOps

from bookbug_assets.defs.books.references import hero_page_quality, sprite_sheet_quality
from bookbug_assets.defs.gate_config import QualityThresholds
from bookbug_assets.quality.verdicts import assess_image, load_verdicts, quality_reference
from bookbug_assets.defs.book_runs import _assets
from bookbug_assets.ledger import Ledger
from bookbug_assets.defs.partitions import books_partitions, page_slots_partitions
from bookbug_assets.providers.base import ImageProvider, JobOutput, ModelCapabilities
from bookbug_assets.quality import synthetic as syn
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE

ADA = syn.random_character(np.random.default_rng(11), "warm")
OTHER = syn.random_character(np.random.default_rng(30), "warm")  # same palette family, another creature
SCENE = syn.background(np.random.default_rng(21), (512, 512), "warm")  # the planted style: one warm meadow


def scene_with(spec, seed: int, size: tuple[int, int]) -> Image.Image:
    """The style's meadow (maybe mirrored) with the character in a random pose and place."""
    rng = np.random.default_rng(seed)
    page = SCENE.resize(size)
    if rng.random() < 0.5:
        page = ImageOps.mirror(page)
    sprite = syn.draw_character(spec, syn.random_pose(rng))
    scale = rng.uniform(0.4, 0.7) * min(size) / sprite.height
    sprite = sprite.resize((int(sprite.width * scale), int(sprite.height * scale)), Image.Resampling.LANCZOS)
    page.paste(sprite, (int(rng.uniform(0, size[0] - sprite.width)), int(rng.uniform(0, size[1] - sprite.height))),
               sprite)
    return page.filter(ImageFilter.GaussianBlur(0.6))  # generated art is never pixel-crisp


def planted_image(mode: str, seed: int, size: tuple[int, int]) -> Image.Image:
    if mode == "sheet":
        return syn.reference_sheet(ADA, np.random.default_rng(seed), size=min(size)).resize(size)
    if mode == "blank":
        return Image.new("RGB", size, (236, 226, 200))
    page = scene_with(OTHER if mode == "wrong" else ADA, seed, size)
    if mode == "blur":
        return page.filter(ImageFilter.GaussianBlur(10))
    if mode == "offpalette":  # every colour moved to another channel: same drawing, foreign palette
        r, g, b = page.split()
        return Image.merge("RGB", (b, r, g))
    return page


class PlantedProvider(ImageProvider):
    """Test provider: page N's k-th distinct seed is drawn as PLAN[N][k] (default good); the sprite sheet's
    k-th as SHEET[k] (or always SHEET, a string)."""

    name = "planted"
    PRICE = 0.0
    PLAN: dict[int, list[str]] = {}
    SHEET = "sheet"
    seen: dict[str, list[int]] = {}

    def capabilities(self, model: str) -> ModelCapabilities:
        return ModelCapabilities(model=model, max_references=4, min_size=256, max_size=512, price_usd=self.PRICE)

    def submit(self, request, reference_bytes) -> str:
        return f"planted-{request.cache_key()[:12]}"

    def wait(self, job_id, request, deadline_s) -> JobOutput:
        seeds = PlantedProvider.seen.setdefault(request.label, [])
        if request.seed not in seeds:
            seeds.append(request.seed)
        if request.kind == "sprite_sheet":
            plan = [self.SHEET] if isinstance(self.SHEET, str) else self.SHEET
        elif request.kind == "hero_page":
            plan = ["good"]
        else:
            plan = self.PLAN.get(int(request.label.split()[-1]), ["good"])
        mode = plan[min(seeds.index(request.seed), len(plan) - 1)]
        out = io.BytesIO()
        planted_image(mode, request.seed, (request.width, request.height)).save(out, format="PNG")
        return JobOutput(image=out.getvalue(), version="planted-1", seed=request.seed)


@pytest.fixture
def planted(monkeypatch, workspace):
    """The planted provider registered, a synthetic warm style, and a writer of short stories."""
    monkeypatch.setitem(__import__("bookbug_assets.providers.registry", fromlist=["FAMILIES"]).FAMILIES,
                        "planted", "tests.test_checks:PlantedProvider")
    monkeypatch.setattr(PlantedProvider, "PLAN", {})
    monkeypatch.setattr(PlantedProvider, "SHEET", "sheet")
    monkeypatch.setattr(PlantedProvider, "PRICE", 0.0)
    monkeypatch.setattr(PlantedProvider, "seen", {})
    style = workspace["styles"] / "planted-warm"
    (style / "images").mkdir(parents=True)
    for i in range(6):
        (ImageOps.mirror(SCENE) if i % 2 else SCENE).resize((256, 256)).save(style / "images" / f"{i:02d}.png")
        (style / "images" / f"{i:02d}.txt").write_text("a warm meadow with hills, a sun and a few trees")
    style_yaml = yaml.safe_load((workspace["styles"] / "soft-meadow" / "style.yaml").read_text())
    (style / "style.yaml").write_text(yaml.safe_dump({**style_yaml, "name": "Planted warm"}))
    return workspace


def write_story(workspace, book_id: str, pages: int, provider: str | None = "planted:v1", style="planted-warm",
                budget: float | None = None, characters=None):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(book_id=book_id, style=style, pages=data["pages"][:pages], budget_usd=budget)
    if provider:
        data["provider"] = provider
    if characters is not None:
        data["characters"] = characters
    for page in data["pages"]:
        page["characters"] = [c["id"] for c in data["characters"]][:1]
    path = workspace["stories"] / f"{book_id}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_story_file(path, {p.name for p in workspace["styles"].iterdir()})


def render_references(defs, instance, story, checks=True):
    instance.add_dynamic_partitions(books_partitions.name, [story.book_id])
    missing = set(story.page_keys) - set(instance.get_dynamic_partitions(page_slots_partitions.name))
    if missing:
        instance.add_dynamic_partitions(page_slots_partitions.name, sorted(missing))
    if story.style not in instance.get_dynamic_partitions("styles"):
        instance.add_dynamic_partitions("styles", [story.style])  # the style sensor's job in a deployment
    dg.materialize(_assets(defs, "style_dataset", "style_lora"), instance=instance,
                   resources=defs.resources, partition_key=story.style)
    extra = [sprite_sheet_quality, hero_page_quality] if checks else []
    return dg.materialize([*_assets(defs, "story", "sprite_sheet", "hero_page"), *extra], instance=instance,
                          resources=defs.resources, partition_key=story.book_id, raise_on_error=False)


def render_pages(defs, instance, story, pages=None, run_config=None):
    keys = [k for k in story.page_keys if pages is None or int(k) in pages]
    return dg.materialize(_assets(defs, "book_pages"), instance=instance, resources=defs.resources,
                          run_config=run_config, raise_on_error=False, tags={
                              "dagster/asset_partition_range_start": f"{story.book_id}|{keys[0]}",
                              "dagster/asset_partition_range_end": f"{story.book_id}|{keys[-1]}"})


def evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    """Page evaluations by page partition, the others by check name."""
    return {e.partition if e.check_name == "page_quality" else e.check_name: e
            for e in result.get_asset_check_evaluations()}


def pages_config(**kw):
    return {"ops": {"book_pages": {"config": kw}}}


def test_metrics_fail_planted_bad_images_and_pass_good_ones(planted, defs_for, instance):
    defs = defs_for()
    story = write_story(planted, "metric-book", pages=1)
    assert render_references(defs, instance, story).success
    store = defs.resources["storage"].store()
    ref = quality_reference(store, defs.resources["storage"].styles_path, story)
    t = QualityThresholds()
    verdicts = {}
    for mode in ("good", "blank", "blur", "wrong", "offpalette"):
        out = io.BytesIO()
        planted_image(mode, 1234, (512, 512)).save(out, format="PNG")
        verdicts[mode] = assess_image(out.getvalue(), ref, t.gate(), kind="page", is_preview=False, has_characters=True)
    assert verdicts["good"].passed, verdicts["good"]
    for mode in ("blank", "blur", "wrong", "offpalette"):
        assert not verdicts[mode].passed, (mode, verdicts[mode])
    assert any("off-style" in f for f in verdicts["offpalette"].failures)
    assert any("wrong character" in f for f in verdicts["wrong"].failures)
    assert any("blurred" in f for f in verdicts["blur"].failures)
    assert any("blank" in f for f in verdicts["blank"].failures)


def test_preview_book_passes_every_default_check(workspace, defs_for, instance):
    defs = defs_for()
    story = write_story(workspace, "preview-book", pages=3, provider=None, style="soft-meadow")
    refs = render_references(defs, instance, story)
    assert refs.success
    assert all(e.passed for e in refs.get_asset_check_evaluations())
    pages = render_pages(defs, instance, story)
    assert pages.success
    evals = evaluations(pages)
    assert sorted(evals) == [f"preview-book|00{i}" for i in (1, 2, 3)]
    assert all(e.passed for e in evals.values())
    assert "not gated" in evals["preview-book|001"].metadata["notes"].value  # says so instead of failing


def test_planted_pages_fail_their_partition_and_never_reach_the_pdf(planted, defs_for, instance):
    defs = defs_for()
    story = write_story(planted, "planted-book", pages=5)
    PlantedProvider.PLAN = {2: ["blank"], 3: ["blur"], 4: ["wrong"], 5: ["offpalette"]}
    refs = render_references(defs, instance, story)
    assert refs.success and all(e.passed for e in refs.get_asset_check_evaluations())
    result = render_pages(defs, instance, story, run_config=pages_config(max_attempts=2))
    assert not result.success  # blocking check failed
    evals = evaluations(result)
    assert evals["planted-book|001"].passed
    assert [k for k, e in sorted(evals.items()) if not e.passed] == [f"planted-book|00{i}" for i in (2, 3, 4, 5)]
    assert evals["planted-book|004"].blocking
    store = defs.resources["storage"].store()
    assert store.exists("books/planted-book/pages/001.json")
    assert not store.exists("books/planted-book/pages/003.json")
    pdf = dg.materialize(_assets(defs, "book_pdf"), instance=instance, resources=defs.resources,
                         partition_key=story.book_id, raise_on_error=False)
    assert not pdf.success
    # Two attempts per bad page, each a ledger row; the check says which won and why both failed.
    rows = [r for r in Ledger(store).rows(story.book_id) if r.partition == "planted-book|002"]
    assert len(rows) == 2 and len({r.seed for r in rows}) == 2
    assert "attempt" in evals["planted-book|002"].description


def test_a_failed_page_is_regenerated_with_a_new_seed_and_the_winner_is_recorded(planted, defs_for, instance):
    defs = defs_for()
    story = write_story(planted, "regen-book", pages=2)
    PlantedProvider.PLAN = {2: ["blank", "good"]}
    render_references(defs, instance, story, checks=False)
    result = render_pages(defs, instance, story)
    assert result.success
    verdict = load_verdicts(defs.resources["storage"].store(), story.book_id)["page-002"]
    assert verdict.accepted and verdict.winner == 2 and len(verdict.attempts) == 2
    assert not verdict.attempts[0].passed and verdict.attempts[0].failures
    page2 = [e for e in result.get_asset_materialization_events() if e.partition == "regen-book|002"][0]
    table = page2.materialization.metadata["attempts_table"].value
    assert "**won**" in table and "lost:" in table


def test_a_rerun_with_fewer_attempts_keeps_the_accepted_page(planted, defs_for, instance):
    defs = defs_for()
    story = write_story(planted, "rerun-book", pages=1)
    PlantedProvider.PLAN = {1: ["blank", "blank", "good"]}
    render_references(defs, instance, story, checks=False)
    assert render_pages(defs, instance, story).success
    store = defs.resources["storage"].store()
    accepted = store.read_json("books/rerun-book/pages/001.json")
    paid = len([r for r in Ledger(store).rows(story.book_id) if r.status == "ok"])

    rerun = render_pages(defs, instance, story, run_config=pages_config(max_attempts=1))
    assert rerun.success
    assert store.read_json("books/rerun-book/pages/001.json")["image_sha256"] == accepted["image_sha256"]
    assert load_verdicts(store, story.book_id)["page-001"].winner == 3
    assert len([r for r in Ledger(store).rows(story.book_id) if r.status == "ok"]) == paid  # nothing new paid


def test_regeneration_stops_at_the_budget(planted, defs_for, instance):
    defs = defs_for()
    PlantedProvider.PRICE = 0.10
    story = write_story(planted, "budget-book", pages=1, budget=0.45)
    PlantedProvider.PLAN = {1: ["blank"]}
    render_references(defs, instance, story, checks=False)  # $0.20
    result = render_pages(defs, instance, story, run_config=pages_config(max_attempts=5))
    assert not result.success
    store = defs.resources["storage"].store()
    rows = Ledger(store).rows(story.book_id)
    assert sum(r.cost_usd for r in rows) == pytest.approx(0.40)  # two page attempts fit, the third would not
    assert [r.status for r in rows if r.partition == "budget-book|001"] == ["ok", "ok", "budget_stop"]
    verdict = load_verdicts(store, story.book_id)["page-001"]
    assert len(verdict.attempts) == 2 and "budget" in verdict.stopped


def test_a_blank_sprite_sheet_fails_and_blocks_the_hero_page(planted, defs_for, instance):
    defs = defs_for()
    story = write_story(planted, "blank-sheet", pages=1)
    PlantedProvider.SHEET = "blank"
    result = render_references(defs, instance, story)
    evals = evaluations(result)
    assert not evals["sprite_sheet_quality"].passed
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "hero_page" not in materialized
    rows = [r for r in Ledger(defs.resources["storage"].store()).rows(story.book_id) if r.asset == "sprite_sheet"]
    assert len(rows) == 3  # redrawn up to max_attempts before the check gave up on it


def test_a_blank_sprite_sheet_is_redrawn_and_the_book_goes_on(planted, defs_for, instance):
    defs = defs_for()
    story = write_story(planted, "second-sheet", pages=1)
    PlantedProvider.SHEET = ["blank", "sheet"]
    result = render_references(defs, instance, story)
    assert result.success
    evals = evaluations(result)
    assert evals["sprite_sheet_quality"].passed and evals["hero_page_quality"].passed
    sheet = next(e.materialization.metadata for e in result.get_asset_materialization_events()
                 if e.asset_key.to_user_string() == "sprite_sheet")
    assert sheet["winning_attempt"].value == 2 and sheet["accepted"].value is True
    assert "blank" in sheet["attempts_table"].value  # attempt 1 lost, and the table says why
    store = defs.resources["storage"].store()
    rows = [r for r in Ledger(store).rows(story.book_id) if r.asset == "sprite_sheet"]
    assert len(rows) == 2 and len({r.seed for r in rows}) == 2  # two paid draws, two seeds
    verdict = load_verdicts(store, story.book_id)["sprite_sheet"]
    assert verdict.winner == 2 and len(verdict.attempts) == 2  # the check kept the asset's attempt history
