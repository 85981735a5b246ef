"""CPU seconds per image of the quality gate's assessment (verdicts.assess_image), and a check that its values
did not move.

Images, all built offline and deterministically, encoded as PNG the way the gate receives them:
  book       the example book as `make demo` draws it on the preview provider: sprite sheet, hero page and
             12 pages at the story's render size (1024 px long side), judged against the soft-meadow style
             profile and the preview sheet's character model, as quality_reference builds them
  synthetic  synthetic scenes with a character (quality.synthetic) at 1024x1024 and 2048x1024, judged as real
             renders against a three-view model sheet (1152x384)
  modes      an RGBA, a palette and a greyscale page, to cover the metrics' own conversions

Values: every public metric at full precision (blur, grid peaks, uniformity, clipping with and without neutral
pixels, style components, character match score, components and box), the character models and
assess_image's scores, pass/fail and reasons. The first run writes them to --values (default
gate_before.json in the system's temporary folder); later runs compare against that file (abs tolerance 1e-6) and say how far they moved.

CPU is time.process_time around assess_image, the best of --reps passes (a shared 2-core machine is noisy);
the 1-minute load average is printed next to it.

    .venv/bin/python benchmarks/gate_cpu.py [--reps 5] [--values FILE] [--record]
Ends with: gate_cpu per_image=<s> load=<1-min load>
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bookbug_assets.providers.base import CharacterToken, ImageRequest  # noqa: E402
from bookbug_assets.providers.preview import _CAPS, render_preview  # noqa: E402
from bookbug_assets.quality import artifacts, character, style  # noqa: E402
from bookbug_assets.quality.artifacts import Thresholds  # noqa: E402
from bookbug_assets.quality.book_limits import book_limits  # noqa: E402
from bookbug_assets.quality.synthetic import random_character, reference_sheet, render_page  # noqa: E402
from bookbug_assets.quality.verdicts import QualityReference, assess_image  # noqa: E402
from bookbug_assets.rendering import render_size  # noqa: E402
from bookbug_assets.stories.parsing import load_story_file  # noqa: E402

STORY = REPO / "data" / "stories" / "pip-and-the-lantern.yaml"
STYLE_IMAGES = REPO / "data" / "styles" / "soft-meadow" / "images"


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _style_reference() -> tuple[style.StyleProfile, QualityReference]:
    images = [Image.open(p) for p in sorted(STYLE_IMAGES.glob("*.png"))]
    profile = style.calibrated_style_profile(images)
    return profile, QualityReference(profile, None, limits=book_limits("soft-meadow", profile, None))


def book_images(ref: QualityReference) -> list[dict]:
    """The example book's 14 preview images, each with how the gate judges it."""
    story = load_story_file(STORY)
    w, h = render_size(story, _CAPS)
    chars = tuple(CharacterToken(id=c.id, name=c.name) for c in story.characters)
    palette = ("#88aa55", "#ffeecc", "#c38d9e", "#41b3a3")

    def request(kind, label, scene, who, seed):
        return ImageRequest(provider="preview", model="storyboard-v1", kind=kind, prompt=scene, width=w, height=h,
                            seed=seed, characters=who, palette=palette, label=label, scene=scene)

    sheet = render_preview(request("sprite_sheet", "sprite sheet", "", chars, 1))
    sheet_ref = QualityReference(ref.style, character.character_model(Image.open(io.BytesIO(sheet))), True,
                                 ref.limits)
    items = [dict(name="book/sprite_sheet", data=sheet, ref=ref, kind="sprite_sheet", is_preview=True,
                  has_characters=True, size=(w, h)),
             dict(name="book/hero_page", data=render_preview(request("hero_page", "cover", story.title, chars, 2)),
                  ref=sheet_ref, kind="hero_page", is_preview=True, has_characters=True, size=(w, h))]
    for n, page in enumerate(story.pages, 1):
        who = tuple(t for t in chars if t.id in page.characters)
        data = render_preview(request("page", f"page {n}", page.scene, who, 100 + n))
        items.append(dict(name=f"book/page-{n:03d}", data=data, ref=sheet_ref, kind="page", is_preview=True,
                          has_characters=bool(who), size=(w, h)))
    return items


def synthetic_images(ref: QualityReference) -> list[dict]:
    rng = np.random.default_rng(7)
    spec = random_character(rng, "warm")
    sheet = reference_sheet(spec, rng, size=384, views=3)
    model = character.character_model(sheet)
    real_ref = QualityReference(ref.style, model, False, ref.limits)
    items = []
    for i, (w, h) in enumerate([(1024, 1024), (1024, 1024), (2048, 1024), (2048, 1024)]):
        square = render_page(spec if i % 2 == 0 else random_character(rng, "warm"), rng, h, strict=i < 2)
        page = square if w == h else Image.fromarray(np.concatenate(
            [np.asarray(square), np.asarray(render_page(spec, rng, h))], axis=1))
        items.append(dict(name=f"synthetic/{w}x{h}-{i}", data=_png(page), ref=real_ref, kind="page",
                          is_preview=False, has_characters=True, size=(w, h)))
    # Pages that fail: over-saturated (clipping catches it) and blurred, so those metrics carry real values.
    first = Image.open(io.BytesIO(items[0]["data"]))
    hot = ImageEnhance.Contrast(ImageEnhance.Color(first).enhance(3)).enhance(1.5)
    items += [dict(name="synthetic/oversaturated", data=_png(hot), ref=real_ref, kind="page", is_preview=False,
                   has_characters=True, size=hot.size),
              dict(name="synthetic/blurred", data=_png(first.filter(ImageFilter.GaussianBlur(3))), ref=real_ref,
                   kind="page", is_preview=False, has_characters=True, size=first.size)]
    items.append(dict(name="synthetic/sheet", data=_png(sheet), ref=ref, kind="sprite_sheet", is_preview=False,
                      has_characters=True, size=sheet.size))
    # Pages that reach the metrics in other modes (the gate converts to RGB first; callers of the metrics may not).
    base = Image.open(io.BytesIO(items[0]["data"]))
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    items += [dict(name="modes/rgba", image=rgba, ref=real_ref), dict(name="modes/p", image=base.quantize(64),
              ref=real_ref), dict(name="modes/l", image=base.convert("L"), ref=real_ref)]
    return items


def _arr(a) -> list:
    return np.asarray(a, dtype=np.float64).ravel().tolist()


def model_values(model: character.CharacterModel) -> dict:
    out = {"palette": _arr(model.palette)}
    for i, t in enumerate(model.templates):
        out[f"t{i}"] = {"colour": _arr(t.colour), "adjacency": _arr(t.adjacency), "hog0": _arr(t.hogs[0]),
                        "hog1": _arr(t.hogs[1]), "grid": _arr(t.grid), "aspect": t.aspect,
                        "support": _arr(t.support)}
    return out


def metric_values(image: Image.Image, ref: QualityReference) -> dict:
    """Every public metric, unrounded."""
    v = {"blur": artifacts.blur_score(image), "uniformity": artifacts.uniformity(image),
         "clipping": artifacts.clipping(image), "clipping_neutral": artifacts.clipping(image, include_neutral=True),
         **{f"grid_{p}": s for p, s in artifacts.grid_peaks(image).items()},
         **{f"style_{k}": s for k, s in style.style_components(image, ref.style).items()},
         "style_distance": style.style_distance(image, ref.style)}
    if ref.character is not None:
        m = character.character_match(image, ref.character)
        v.update({"character_score": m.score, **{f"character_box{i}": b for i, b in enumerate(m.box)},
                  **{f"character_{k}": s for k, s in m.components.items()}})
        report = artifacts.assess(image, image.size, Thresholds(), style=ref.style, reference=ref.character)
    else:
        report = artifacts.assess(image, image.size, Thresholds(), style=ref.style)
    v.update({f"assess_{k}": s for k, s in report.metrics.items()})
    v["assess_passed"] = float(report.passed)
    v["assess_reasons"] = report.reasons
    return v


def _how(item: dict) -> dict:
    return {k: item[k] for k in ("kind", "is_preview", "has_characters", "size")}


def collect_values(items: list[dict], profile: style.StyleProfile) -> dict:
    values = {"profile": {"palette": _arr(profile.palette), "weights": _arr(profile.weights),
                          "histogram": _arr(profile.histogram), "baseline": profile.baseline_coverage}}
    models = {}
    for item in items:
        image = item.get("image") or Image.open(io.BytesIO(item["data"]))
        values[item["name"]] = metric_values(image, item["ref"])
        model = item["ref"].character
        if model is not None and id(model) not in models:
            models[id(model)] = f"model/{len(models)}"
            values[models[id(model)]] = model_values(model)
        if "data" in item:
            a = assess_image(item["data"], item["ref"], Thresholds(), **_how(item))
            values[item["name"]]["gate"] = a.model_dump(mode="json")
    return values


def compare(before, after, path="") -> tuple[int, float, list[str]]:
    """(values compared, max abs difference, mismatches)."""
    if isinstance(before, dict):
        n, worst, bad = 0, 0.0, []
        if set(before) != set(after):
            bad.append(f"{path}: keys {sorted(set(before) ^ set(after))}")
        for k in set(before) & set(after):
            a, b, c = compare(before[k], after[k], f"{path}/{k}")
            n, worst, bad = n + a, max(worst, b), bad + c
        return n, worst, bad
    if isinstance(before, list) and before and not isinstance(before[0], (int, float)):
        if len(before) != len(after):
            return 1, math.inf, [f"{path}: {before} != {after}"]
        return (len(before), 0.0, []) if before == after else (len(before), math.inf, [f"{path}: {before} != {after}"])
    if isinstance(before, list):
        if len(before) != len(after):
            return 1, math.inf, [f"{path}: length {len(before)} != {len(after)}"]
        d = float(np.max(np.abs(np.asarray(before) - np.asarray(after)))) if before else 0.0
        return len(before), d, [f"{path}: max diff {d:g}"] if d > 1e-6 else []
    if isinstance(before, (int, float)) and not isinstance(before, bool) and isinstance(after, (int, float)):
        d = abs(before - after)
        return 1, d, [f"{path}: {before!r} != {after!r}"] if d > 1e-6 else []
    return 1, 0.0 if before == after else math.inf, [] if before == after else [f"{path}: {before!r} != {after!r}"]


def time_gate(items: list[dict], reps: int) -> list[float]:
    """CPU seconds per image of assess_image over the PNG items, one number per pass."""
    gated = [i for i in items if "data" in i]
    out = []
    for _ in range(reps):
        start = time.process_time()
        for item in gated:
            assess_image(item["data"], item["ref"], Thresholds(), **_how(item))
        out.append((time.process_time() - start) / len(gated))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--values", default=str(Path(tempfile.gettempdir()) / "gate_before.json"))
    parser.add_argument("--record", action="store_true", help="overwrite the values file with this run's values")
    parser.add_argument("--skip-values", action="store_true")
    args = parser.parse_args()

    profile, ref = _style_reference()
    items = book_images(ref) + synthetic_images(ref)
    book = [i for i in items if i["name"].startswith("book/")]
    if not args.skip_values:
        values = collect_values(items, profile)
        path = Path(args.values)
        if args.record or not path.exists():
            path.write_text(json.dumps(values, indent=1))
            print(f"values recorded to {path} ({len(values)} entries)")
        else:
            n, worst, bad = compare(json.loads(path.read_text()), json.loads(json.dumps(values)))
            print(f"values: {n} compared against {path}, max abs diff {worst:.3g}, "
                  f"{'MATCH' if not bad else f'{len(bad)} MISMATCHES'}")
            for line in bad[:40]:
                print("  ", line)
        for item in items[:3] + items[16:20]:
            v = values[item["name"]]
            print(f"  {item['name']:24s} " + " ".join(f"{k}={v[k]:.6f}" for k in
                                                         ("blur", "grid_16", "uniformity", "clipping",
                                                          "style_distance", "character_score") if k in v))
    assess_image(book[0]["data"], book[0]["ref"], Thresholds(), **_how(book[0]))  # warm caches and imports
    load0 = os.getloadavg()[0]
    book_runs = time_gate(book, args.reps)
    all_runs = time_gate(items, args.reps)
    load = os.getloadavg()[0]
    print(f"book (14 preview images):    per image min {min(book_runs):.4f} s, median "
          f"{float(np.median(book_runs)):.4f} s over {args.reps} passes")
    print(f"all ({sum('data' in i for i in items)} images incl. 2048 px): per image min {min(all_runs):.4f} s, "
          f"median {float(np.median(all_runs)):.4f} s")
    print(f"load average {load0:.2f} -> {load:.2f}")
    print(f"gate_cpu per_image={min(book_runs):.4f} load={load:.2f}")


if __name__ == "__main__":
    main()
