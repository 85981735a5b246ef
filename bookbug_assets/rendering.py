"""A book's render plan and the requests it makes: what the sprite sheet, hero page and pages ask a model for.

The page, reference and experiment assets are thin around this module: they choose the provider,
then `book_plan` gathers what every image of the book shares (story, style profile, model
capabilities, references), `*_request` builds the provider-neutral request, and `render_target`
draws it through the quality gate and keeps the target's record (layout) for what comes next. With a quality
judge configured, `judge_subject` says what the judge compares a target with (its characters' cards, its
references, scene and style), and a repair attempt's failed image travels with the references.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bookbug_assets.generation import GenerationContext, generate_image
from bookbug_assets.layout import (
    BOOK_TARGETS, GenerationRecord, derived_seed, PageRecord, is_page_target, load_record, page_number, page_partition, page_target,
    record_key, style_profile_key,
)
from bookbug_assets.providers.base import (
    CharacterToken, ImageProvider, ImageRequest, LoraRef, ModelCapabilities, ReferenceImage,
)
from bookbug_assets.quality.gate import GateSettings, render_with_gate
from bookbug_assets.quality.judge_gate import JudgeSubject
from bookbug_assets.quality.judge_models import character_cards
from bookbug_assets.quality.verdicts import QualityReference, QualityVerdict, gate_refused
from bookbug_assets.review import ReviewState
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story, page_key
from bookbug_assets.styles import dataset_items, dataset_palette, load_style_config

NO_TEXT = "No text, letters or words anywhere in the image."


class ReferenceNotAccepted(RuntimeError):
    """A page would be drawn against a sprite sheet or hero page its gate refused: nothing is requested."""


# --- what every image of a book shares ------------------------------------------------------------------------

def load_style_profile(store: ArtifactStore, styles_dir: Path, style: str, log) -> dict:
    """The materialized style_lora profile; an untrained profile from the folder if none exists yet."""
    key = style_profile_key(style)
    if store.exists(key):
        return store.read_json(key)
    style_dir = styles_dir / style
    config = load_style_config(style_dir)
    log.warning(f"style_lora[{style}] is not materialized; using an untrained profile of {style_dir.name}")
    return {"style": style, "prompt_prefix": config.prompt_prefix, "trigger_word": config.trigger_word,
            "palette": dataset_palette(style_dir, dataset_items(style_dir)), "lora": None}


@dataclass(frozen=True)
class BookPlan:
    """One book on one model: what every request of the book is built from."""

    story: Story
    profile: dict
    family: str
    model: str
    provider: ImageProvider
    caps: ModelCapabilities
    references: tuple[ReferenceImage, ...] = ()  # sprite sheet and hero page, for pages
    reference_bytes: dict[str, bytes] | None = None


def accepted_references(store: ArtifactStore, book_id: str, targets: tuple[str, ...]) -> tuple[ReferenceImage, ...]:
    """The references an image is drawn against, refusing (ReferenceNotAccepted) one whose image failed its gate
    and no reviewer approved: a backfill's later runs do not see a blocking check fail, and every image drawn
    against a rejected reference would be paid for and thrown away."""
    records = {target: load_record(store, book_id, target) for target in targets}
    refused = [(t, v) for t, r in records.items() if (v := gate_refused(store, book_id, t, r.image_sha256))]
    if refused:
        raise ReferenceNotAccepted(
            f"book {book_id!r}: not drawing against "
            + " and ".join(f"a {t} that failed its quality gate ({'; '.join(v.failures) or 'see its check'})"
                           for t, v in refused)
            + "; redraw it, or approve it in the book's review file, first. Nothing was requested.")
    return tuple(reference(records[t], t) for t in targets)


def book_plan(store: ArtifactStore, styles_dir: Path, story: Story, family: str, model: str,
              provider: ImageProvider, log, *, references: tuple[str, ...] = ()) -> BookPlan:
    """The book's plan on one model, with the `references` (targets) its images are drawn against."""
    refs = accepted_references(store, story.book_id, references)
    return BookPlan(story=story, profile=load_style_profile(store, styles_dir, story.style, log), family=family,
                    model=model, provider=provider, caps=provider.capabilities(model), references=refs,
                    reference_bytes={ref.sha256: store.read_bytes(ref.key) for ref in refs})


def render_size(story: Story, caps: ModelCapabilities, longest: int = 1024) -> tuple[int, int]:
    """The book's aspect at the model's working size; print resolution comes at PDF time."""
    fmt = story.format
    aspect = (fmt.trim_width_in + 2 * fmt.bleed_in) / (fmt.trim_height_in + 2 * fmt.bleed_in)
    side = max(caps.min_size, min(caps.max_size, longest))
    w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
    return int(round(w / 16) * 16), int(round(h / 16) * 16)


def style_prefix(profile: dict) -> str:
    trigger = profile.get("trigger_word") or ""
    prefix = profile.get("prompt_prefix") or ""
    return f"{trigger}, {prefix}".strip(", ") if trigger and trigger not in prefix else prefix


def character_lines(story: Story, ids: list[str] | None = None) -> str:
    chosen = [c for c in story.characters if ids is None or c.id in ids]
    return " ".join(f"{c.name}: {c.description}." for c in chosen)


def tokens(story: Story, ids: list[str] | None = None) -> tuple[CharacterToken, ...]:
    return tuple(CharacterToken(id=c.id, name=c.name) for c in story.characters if ids is None or c.id in ids)


def reference(record: GenerationRecord, role: str) -> ReferenceImage:
    return ReferenceImage(role=role, sha256=record.image_sha256, key=record.image_key)


def lora_ref(profile: dict) -> LoraRef | None:
    lora = profile.get("lora")
    return LoraRef.model_validate(lora) if lora else None


def drawn_for(story_sha256: str, references: tuple[ReferenceImage, ...] = ()) -> dict[str, str]:
    """What an image was drawn against: the story version and its reference images (PageRecord.drawn_for)."""
    return {"story": story_sha256, **{ref.role: ref.sha256 for ref in references}}


# --- requests -------------------------------------------------------------------------------------------------

def make_request(*, family: str, model: str, caps: ModelCapabilities, story: Story, profile: dict, kind: str,
                 prompt: str, seed_name: str, references: tuple[ReferenceImage, ...], character_ids: list[str] | None,
                 label: str, scene: str) -> ImageRequest:
    width, height = render_size(story, caps)
    # Models that take fewer references get the most important ones (sprite sheet first);
    # the provider stitches several into one image where the model takes exactly one.
    if caps.max_references == 0:
        references = ()
    # The style's LoRA always travels with the request: a model that cannot apply it refuses it
    # (ImageProvider.validate) instead of silently drawing without the style.
    lora = lora_ref(profile)
    return ImageRequest(provider=family, model=model, kind=kind, prompt=prompt, width=width, height=height,
                        seed=derived_seed(story, seed_name), references=references, lora=lora,
                        characters=tokens(story, character_ids), palette=tuple(profile.get("palette", ())),
                        label=label, scene=scene, variant=caps.variant)


def sprite_sheet_prompt(story: Story, profile: dict) -> str:
    return (f"{style_prefix(profile)} character reference sheet for the children's picture book "
            f"'{story.title}': each character shown full body three times (front, three-quarter, back) on a "
            f"plain light background, consistent proportions and colours. {character_lines(story)} {NO_TEXT}")


def hero_page_prompt(story: Story, profile: dict) -> str:
    return (f"{style_prefix(profile)} cover illustration for the children's picture book '{story.title}'. "
            f"{story.pages[0].scene} The characters look exactly as in the reference sheet. "
            f"{character_lines(story)} Leave calm space at the top for the title. {NO_TEXT}")


def page_prompt(story: Story, page_no: int, profile: dict) -> str:
    page = story.pages[page_no - 1]
    who = character_lines(story, page.characters) if page.characters else "No characters on this page."
    return (f"{style_prefix(profile)} illustration for page {page_no} of the children's picture book "
            f"'{story.title}'. Scene: {page.scene} {who} Characters look exactly as in the reference sheet; "
            f"match the cover's palette and rendering. Full-bleed art, keep faces away from the edges. {NO_TEXT}")


def reference_request(plan: BookPlan, target: str) -> ImageRequest:
    """The sprite sheet (drawn from the story alone) or the hero page (drawn against the plan's sprite sheet)."""
    story = plan.story
    prompt = sprite_sheet_prompt(story, plan.profile) if target == "sprite_sheet" else \
        hero_page_prompt(story, plan.profile)
    return make_request(family=plan.family, model=plan.model, caps=plan.caps, story=story, profile=plan.profile,
                        kind=target, prompt=prompt, seed_name=target, references=plan.references, character_ids=None,
                        label="sprite sheet" if target == "sprite_sheet" else "cover",
                        scene=story.title if target == "hero_page" else "")


def page_request(plan: BookPlan, number: int) -> ImageRequest:
    """Page `number` (1-based) of the book, drawn against the plan's references, seeded by its target name."""
    story = plan.story
    if not 1 <= number <= len(story.pages):
        raise ValueError(f"page {number} is past the end of {story.book_id!r} ({len(story.pages)} pages)")
    page = story.pages[number - 1]
    return make_request(family=plan.family, model=plan.model, caps=plan.caps, story=story, profile=plan.profile,
                        kind="page", prompt=page_prompt(story, number, plan.profile), seed_name=page_target(number),
                        references=plan.references, character_ids=page.characters, label=f"page {number}",
                        scene=page.scene)


# --- drawing through the gate ---------------------------------------------------------------------------------

def render_target(plan: BookPlan, target: str, request: ImageRequest, ctx: GenerationContext, *, store: ArtifactStore,
                  gate: GateSettings, qref: QualityReference | None, review: ReviewState,
                  story_sha256: str) -> tuple[GenerationRecord, QualityVerdict]:
    """Draw one target through the quality gate and keep its record where the next steps look for it.

    The sprite sheet and hero page keep their record even when no attempt passed: their blocking check then
    fails on it and a reviewer can approve it. A page keeps a PageRecord only when accepted; a failed page's
    record is removed, so book_pdf cannot print it, not even an older one.
    """
    story = plan.story
    is_page = is_page_target(target)
    partition = page_partition(story.book_id, page_key(page_number(target))) if is_page else story.book_id

    def generate(r: ImageRequest, change: str = "") -> GenerationRecord:
        refs = dict(plan.reference_bytes or {})
        for ref in r.references:  # a repair sends the failed attempt too (quality/judge_gate.repair_request)
            if ref.sha256 not in refs:
                refs[ref.sha256] = store.read_bytes(ref.key)
        return generate_image(r, plan.provider, ctx, reference_bytes=refs, partition=partition, change=change)

    has_characters = bool(story.pages[page_number(target) - 1].characters) if is_page else True
    subject = judge_subject(plan, target) if gate.judge is not None else None
    record, verdict = render_with_gate(request, generate, store=store, story=story, target=target,
                                       partition=partition, kind="page" if is_page else target, ctx=ctx,
                                       config=gate, qref=qref, has_characters=has_characters, review=review,
                                       seeds_matter=plan.caps.seed_deterministic, judge_subject=subject,
                                       edit_references=plan.caps.max_references)
    key = record_key(story.book_id, target)
    if not is_page:
        store.write_json(key, record.model_dump(mode="json"))
    elif verdict.accepted:
        page = PageRecord(**record.model_dump(), drawn_for=drawn_for(story_sha256, plan.references))
        store.write_json(key, page.model_dump(mode="json"))
    else:
        store.delete(key)
    return record, verdict


SHEET_SCENE = "a character reference sheet: each character full body in several poses on a plain light background"


def judge_subject(plan: BookPlan, target: str) -> JudgeSubject:
    """What the quality judge compares `target` with: the character cards of whoever it shows, the references it
    was drawn against (sprite sheet, hero page), its scene and the book's style."""
    story = plan.story
    refs = tuple((ref.role, (plan.reference_bytes or {})[ref.sha256]) for ref in plan.references)
    if is_page_target(target):
        page = story.pages[page_number(target) - 1]
        cards, scene = character_cards(story, page.characters), page.scene
    else:
        cards = character_cards(story)
        scene = SHEET_SCENE if target == "sprite_sheet" else f"the cover of '{story.title}': {story.pages[0].scene}"
    style = plan.profile.get("prompt_prefix") or story.style  # not the LoRA's trigger word: a judge cannot read it
    return JudgeSubject(references=refs, cards=cards, scene=scene, style=style)
