"""The judge's types: what it is asked about (character cards), what it must answer, and the verdict kept.

`JudgeAnswer` is exactly the JSON a judge returns, validated in strict mode (an identity of "3" or 3.5 is
malformed, not 3; an unknown key is malformed). `JudgeVerdict` is that answer plus who gave it, at what cost,
and, when there is no usable answer, the judge error that fails the gate.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from bookbug_assets.stories.models import Story

Score = Annotated[int, Field(ge=0, le=4, strict=True)]  # 0 = not at all .. 4 = exactly (DreamBench++'s scale)
FeatureStatus = Literal["present", "absent", "unsure"]
Finding = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
OneLine = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300, pattern=r"^[^\n\r]*$")]
ErrorKind = Literal["", "malformed", "refused", "unavailable"]


class CharacterCard(BaseModel):
    """What the judge checks one character against: the story's name, description and visible features."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str
    features: tuple[str, ...] = ()


def character_cards(story: Story, ids: list[str] | None = None) -> tuple[CharacterCard, ...]:
    """The cards of `ids` (a page's characters), in the story's order; every character when `ids` is None."""
    wanted = None if ids is None else set(ids)
    return tuple(CharacterCard(id=c.id, name=c.name, description=c.description, features=tuple(c.features))
                 for c in story.characters if wanted is None or c.id in wanted)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FeatureCheck(_Strict):
    feature: str
    status: FeatureStatus


class CharacterJudgement(_Strict):
    id: str
    present: StrictBool
    identity: Score  # 0 when the character is absent
    features: list[FeatureCheck]
    differences: list[Finding] = Field(max_length=20)  # how the drawing differs from the card and the sheet


class Artifacts(_Strict):
    anatomy_errors: list[Finding] = Field(max_length=20)
    melted_faces: list[Finding] = Field(max_length=20)
    duplicated_limbs: list[Finding] = Field(max_length=20)
    lettering: list[Finding] = Field(max_length=20)  # any text in the art: the book sets its own text

    def found(self) -> list[str]:
        """Every artifact as 'kind: what', in a fixed order."""
        return [f"{kind.replace('_', ' ')}: {what}" for kind in type(self).model_fields
                for what in getattr(self, kind)]


class JudgeAnswer(_Strict):
    """The judge's answer, field for field as the prompt asks for it."""

    characters: list[CharacterJudgement]
    style_match: Score
    scene_match: Score
    artifacts: Artifacts
    safety_concerns: list[Finding] = Field(max_length=20)
    reason: OneLine

    def character(self, character_id: str) -> CharacterJudgement | None:
        return next((c for c in self.characters if c.id == character_id), None)


class JudgeVerdict(BaseModel):
    """One judged image. `error` (with `error_kind`) set means there is no usable answer: the gate fails."""

    judge: str  # <family>:<model>, e.g. openrouter:openai/gpt-4o-2024-08-06
    judge_version: str  # the prompt's version (judge.JUDGE_VERSION)
    cache_key: str
    image_sha256: str
    reference_sha256: dict[str, str] = Field(default_factory=dict)  # role -> sha256
    answer: JudgeAnswer | None = None
    error: str = ""
    error_kind: ErrorKind = ""
    reason: str  # the answer's one-line reason, or the error
    calls: int = 0  # requests this verdict cost now (0 on a cache hit)
    cost_usd: float = 0.0  # what those requests cost (0 on a cache hit)
    latency_s: float = 0.0
    cache_hit: bool = False
    judged_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def ok(self) -> bool:
        return self.answer is not None and not self.error

    def table(self) -> list[dict]:
        """One row per character, for a check's metadata: present, identity, features, differences."""
        if self.answer is None:
            return []
        return [{"character": c.id, "present": c.present, "identity": c.identity,
                 "features": ", ".join(f"{f.feature}: {f.status}" for f in c.features) or "none listed",
                 "differences": "; ".join(c.differences) or "none"} for c in self.answer.characters]


class JudgeThresholds(BaseModel):
    """What a verdict must show to pass. Defaults are a starting point: calibrate on real books."""

    model_config = ConfigDict(extra="forbid")

    min_identity: int = Field(3, ge=0, le=4)
    min_style_match: int = Field(2, ge=0, le=4)
    min_scene_match: int = Field(2, ge=0, le=4)
    require_features: bool = True  # a feature the judge calls absent fails; unsure does not
    allow_lettering: bool = False
    allow_artifacts: bool = False  # anatomy errors, melted faces, duplicated limbs
