"""What the judge tests share (test_judge.py's chat judge, test_judge_replicate.py, test_judge_fal.py): the page and
references they show the judge, the card it checks, one question, the store fixture, and the steps the Replicate
and fal judges' tests take alike (a process dying while it waits, a deadline passing, what must not hold a key).
Each service's own rules stay in its own test file."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, ImageDraw

from bookbug_assets.quality.judge import judge_image
from bookbug_assets.quality.judge_models import CharacterCard
from bookbug_assets.storage import LocalArtifactStore

PIP = CharacterCard(id="pip", name="Pip", description="a small grey field mouse with a red knitted scarf",
                    features=("red knitted scarf", "big round ears"))
SCENE, STYLE = "Pip peeks out of a round door at dusk.", "soft watercolour, warm meadow palette"
RED, BLUE = (200, 40, 40), (50, 90, 200)


def page(scarf: tuple[int, int, int], size: int = 512) -> bytes:
    """A grey mouse on a meadow-coloured page, its scarf in `scarf`."""
    image = Image.new("RGB", (size, size), (236, 222, 190))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size * 0.3, size * 0.3, size * 0.7, size * 0.8), fill=(128, 128, 128))  # the mouse
    draw.rectangle((size * 0.3, size * 0.5, size * 0.7, size * 0.58), fill=scarf)  # its scarf
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PAGE, SHEET, HERO = page(RED), page(RED, 384), page(RED, 448)


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path / "store")


def ask(judge, store, *, image=PAGE, sheet=SHEET, cards=(PIP,)):
    return judge_image(judge, store, image=image, references={"sprite_sheet": sheet, "hero_page": HERO},
                       cards=cards, scene=SCENE, style=STYLE)


def ask_and_die_while_waiting(judge, store, monkeypatch) -> None:
    """The process dies while it waits for the judge job: after the create, after the journal."""
    def killed(job_id, seconds):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(judge._provider, "pause", killed)
    with pytest.raises(KeyboardInterrupt):
        ask(judge, store)


def ask_past_the_deadline(fake, judge, store):
    """A job that never finishes: the verdict is "unavailable", naming the deadline (the caller checks the cancel)."""
    fake.never_finish = True
    verdict = ask(judge, store)
    assert verdict.error_kind == "unavailable" and "no answer within" in verdict.error
    return verdict


def ask_as_the_job_finishes_at_the_cancel(judge, store, finishing, monkeypatch) -> list[str]:
    """The job finishes just as the deadline cancels it (`finishing`: tests/providers/cloud_helpers' patch for the
    service): it is paid, so its answer is the verdict, in one call. Returns the job ids cancelled."""
    cancelled = finishing(judge._provider, monkeypatch)
    verdict = ask(judge, store)
    assert verdict.ok and verdict.calls == 1, verdict.error
    return cancelled


def everything_written(verdicts, judge, caplog, store) -> list[str]:
    """What a key must never be in: the verdicts, the judge's repr, the log and every JSON file in the store."""
    return ([json.dumps(v.model_dump(mode="json")) for v in verdicts] + [repr(judge), caplog.text]
            + [p.read_text() for p in store.root.rglob("*.json")])
