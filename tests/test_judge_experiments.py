"""provider_experiment with the quality judge: each cell goes through the book's gate and judge (repairs included),
is priced with its judge calls (a cache hit at what it first cost), and the candidates are ranked by cost per
acceptable image, with how many images the ranking rests on and whether that decides anything. The book and its
"scarfpaint" provider are tests/test_judge_books.py's: page 1's scarf is drawn blue first, then repaired by edit."""

import io

import dagster as dg
import polars as pl
import pytest
import yaml

from bookbug_assets.ab_report import rank_candidates, ranking_decides, ranking_line
from bookbug_assets.defs.experiments.assets import provider_experiment
from bookbug_assets.experiment import NO_JUDGE, cell_caption
from bookbug_assets.providers import registry
from bookbug_assets.providers.base import ModelCapabilities
from bookbug_assets.review import apply_review_file
from tests.test_judge_books import PRICE, ScarfProvider, _run, _write_story, judged_books  # noqa: F401

JUDGE_PRICE = 0.0125
CHEAP = 0.02


class CheapScarf(ScarfProvider):
    """The same drawing (blue scarf first, red on a repair) at half the price."""

    name = "cheapscarf"

    def capabilities(self, model: str) -> ModelCapabilities:
        return ModelCapabilities(model=model, max_references=self.EDIT_REFERENCES, price_usd=CHEAP, min_size=64,
                                 max_size=4096)


def _experiment(defs, instance, **config):
    config = {"book_id": "ab-book", "name": "scarves", "pages": [1],
              "providers": ["scarfpaint:scarf-v1", "cheapscarf:cheap-v1"], **config}
    result = dg.materialize([provider_experiment], instance=instance, resources=defs.resources,
                            run_config={"ops": {"provider_experiment": {"config": config}}})
    store = defs.resources["storage"].store()
    read = lambda name: pl.read_parquet(io.BytesIO(store.read_bytes(f"experiments/scarves/{name}.parquet")))  # noqa
    return read("comparison"), read("ranking"), result.get_asset_materialization_events()[0].materialization.metadata


def test_experiment_with_a_judge_ranks_by_cost_per_acceptable_image_with_judge_and_repairs(
        judged_books, workspace, instance, monkeypatch):  # noqa: F811
    make_defs, fake = judged_books
    monkeypatch.setitem(registry.FAMILIES, "cheapscarf", f"{__name__}:CheapScarf")
    defs = make_defs()
    story = _write_story(workspace["root"], "ab-book")
    assert all(r.success for r in _run(defs, instance, story).values())
    store = defs.resources["storage"].store()
    reviews = workspace["root"] / "reviews"
    reviews.mkdir(exist_ok=True)
    (reviews / "ab-book.yaml").write_text(yaml.safe_dump({"book_id": "ab-book",
                                                          "sprite_sheet": {"decision": "approve"}}))
    apply_review_file(reviews / "ab-book.yaml", store)

    frame, ranking, metadata = _experiment(defs, instance)
    cells = {r["provider_spec"]: r for r in frame.iter_rows(named=True)}
    own, cheap = cells["scarfpaint:scarf-v1"], cells["cheapscarf:cheap-v1"]
    # Both went blue scarf -> judged absent -> repair by edit -> accepted.
    for cell in (own, cheap):
        assert cell["passed"] and cell["attempts"] == 2 and cell["repairs"] == 1
        assert cell["judge"] == "openrouter:openai/gpt-4o-2024-08-06" and cell["identity"] == 4.0
        assert cell["judge_reason"] == "fake judge: what the page shows"
        assert cell_caption(cell)[2] == "judge: fake judge: what the page shows"
    # The book's own page is all cache hits (nothing paid now), priced at what it first cost: 2 x $0.04 + 2 judge.
    assert own["cost_usd"] == 0.0
    assert own["image_cost_usd"] == pytest.approx(2 * PRICE) and own["judge_cost_usd"] == pytest.approx(0.025)
    assert cheap["cost_usd"] == pytest.approx(2 * CHEAP + 2 * JUDGE_PRICE)  # paid now: 0.065
    assert cheap["image_cost_usd"] == pytest.approx(0.04) and cheap["judge_cost_usd"] == pytest.approx(0.025)

    # Ranked by cost per acceptable image (image + judge, repairs included), by hand: $0.065 < $0.105.
    assert ranking["provider_spec"].to_list() == ["cheapscarf:cheap-v1", "scarfpaint:scarf-v1"]
    assert ranking["rank"].to_list() == [1, 2]
    assert ranking["cost_per_acceptable_usd"].to_list() == pytest.approx([0.065, 0.105])
    assert ranking["repairs_per_acceptable"].to_list() == [1.0, 1.0]
    assert ranking["feature_hit_rate"].to_list() == [1.0, 1.0]
    # Satisfaction: reviewers' approvals of the books each model made (the sheet approved: 1 of 1 reviewed).
    rows = {r["provider_spec"]: r for r in ranking.iter_rows(named=True)}
    assert (rows["scarfpaint:scarf-v1"]["reviewed"], rows["scarfpaint:scarf-v1"]["satisfaction"]) == (1, 1.0)
    assert (rows["cheapscarf:cheap-v1"]["reviewed"], rows["cheapscarf:cheap-v1"]["satisfaction"]) == (0, None)
    # One acceptable image each: the ranking says what it rests on and that it decides nothing yet.
    assert not ranking["decisive"].any() and metadata["decisive"].value is False
    line = metadata["ranking"].value
    assert line.startswith("cheapscarf:cheap-v1 ranks first at $0.0650 per acceptable image")
    assert "rests on 2 image(s), 2 acceptable" in line
    assert "NOT DECISIVE: fewer than 10 acceptable images for cheapscarf:cheap-v1 (1), scarfpaint:scarf-v1 (1)" in line
    assert "| fake judge: what the page shows |" in metadata["comparison"].value

    # A rerun is all cache hits: nothing paid, nothing asked, the same prices and ranking.
    calls = len(fake.completions())
    frame, again, metadata = _experiment(defs, instance, min_acceptable=1)
    assert frame["cost_usd"].sum() == 0.0 and len(fake.completions()) == calls
    assert again["cost_per_acceptable_usd"].to_list() == pytest.approx([0.065, 0.105])
    # Enough images by the count asked for (1), but one image each cannot tell $0.065 from $0.105: the 95 %
    # intervals overlap, so the experiment still decides nothing.
    assert again["decisive"].all() and metadata["decisive"].value is False
    line = metadata["ranking"].value
    assert "NOT DECISIVE: cheapscarf:cheap-v1 ($0.0650-$0.31" in line  # 1 of 1: the rate is 0.21-1 at 95 %
    assert "scarfpaint:scarf-v1 ($0.1050-$0.5084) overlap at 95 % confidence" in line
    # The book's own verdicts are untouched by the experiment's cells.
    from bookbug_assets.quality.verdicts import load_verdicts

    assert load_verdicts(store, "ab-book")["page-001"].provider == "scarfpaint"


def _candidate(spec, acceptable, cost, identity):
    return {"provider_spec": spec, "images": 12, "acceptable_images": acceptable,
            "cost_per_acceptable_usd": cost, "mean_identity": identity}


def test_experiment_ranking_breaks_ties_on_identity_and_puts_no_acceptable_image_last():
    summary = pl.DataFrame([_candidate("none:v1", 0, None, None), _candidate("a:v1", 12, 0.05, 3.1),
                            _candidate("b:v1", 11, 0.05, 3.8), _candidate("c:v1", 12, 0.04, 2.0),
                            _candidate("d:v1", 4, 0.05, None)])
    ranked = rank_candidates(summary, "provider_spec")
    assert ranked["provider_spec"].to_list() == ["c:v1", "b:v1", "a:v1", "d:v1", "none:v1"]
    assert ranked["decisive"].to_list() == [True, True, True, False, False]
    line = ranking_line(ranked, "provider_spec")
    assert line.startswith("c:v1 ranks first at $0.0400 per acceptable image; the ranking rests on 60 image(s), "
                           "39 acceptable; NOT DECISIVE: fewer than 10 acceptable images for d:v1 (4), none:v1 (0)")


def test_the_ranking_decides_only_when_the_leader_is_cheaper_beyond_the_intervals():
    # 60 of 60 at $0.040 (spend $0.040 an image) against 50 of 60 at $0.060 (spend $0.050 an image)
    clear = rank_candidates(pl.DataFrame([_candidate("a:v1", 60, 0.04, 3.0) | {"images": 60},
                                          _candidate("b:v1", 50, 0.06, 3.0) | {"images": 60}]), "provider_spec")
    low, high = clear.row(0, named=True)["cost_per_acceptable_low"], clear.row(0, named=True)["cost_per_acceptable_high"]
    # Wilson 95 % for 60/60: 0.9398-1.0, so $0.0400-$0.0426; for 50/60: 0.7197-0.9069, so $0.0551-$0.0695
    assert (low, high) == pytest.approx((0.04, 0.0426), abs=1e-4)
    assert clear.row(1, named=True)["cost_per_acceptable_low"] == pytest.approx(0.0551, abs=1e-4)
    assert ranking_decides(clear, "provider_spec") and ranking_line(clear, "provider_spec").endswith("; decisive")
    # the same prices on 12 images each: enough acceptable images by count, but the intervals overlap
    close = rank_candidates(pl.DataFrame([_candidate("a:v1", 12, 0.04, 3.0), _candidate("b:v1", 10, 0.06, 3.0)]),
                            "provider_spec")
    assert close["decisive"].all() and not ranking_decides(close, "provider_spec")
    line = ranking_line(close, "provider_spec")
    assert "NOT DECISIVE: a:v1 ($0.0400-$0.0528) and b:v1" in line and "overlap at 95 % confidence" in line
    # a runner-up that made no acceptable image is beaten whatever the interval
    alone = rank_candidates(pl.DataFrame([_candidate("a:v1", 12, 0.04, 3.0), _candidate("none:v1", 0, None, None)]),
                            "provider_spec", min_acceptable=0)
    assert ranking_decides(alone, "provider_spec")


def test_experiment_contact_sheet_says_no_judge_without_one():
    row = {"style_distance": 0.1, "character_similarity": 0.8, "identity": None, "passed": True,
           "image_cost_usd": 0.02, "judge_cost_usd": 0.0, "attempts": 1, "repairs": 0, "judge_reason": NO_JUDGE}
    assert cell_caption(row) == ["style 0.10  char 0.80", "PASS  $0.020  1 try", "no judge"]
