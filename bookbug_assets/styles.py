"""Style datasets: a folder of images with captions and a style.yaml, and the profile derived from it.

data/styles/<name>/
  style.yaml        prompt prefix, trigger word, trainer, optional existing LoRA, optional quality: limits
  images/NN.png     20-50 images
  images/NN.txt     one caption per image
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Literal

import yaml
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bookbug_assets.quality_section import QualitySection
from bookbug_assets.stories.models import is_slug

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MIN_IMAGES, MAX_IMAGES = 5, 200


class ExistingLora(BaseModel):
    """Option A: use a LoRA someone already trained (HF path, URL, or a local file)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="hf:<owner>/<repo>/<file>.safetensors, an https URL, or a local path")
    family: Literal["flux1", "flux2", "sdxl"] = "flux1"
    trigger_word: str = ""
    scale: float = Field(1.0, ge=-1.0, le=3.0)
    sha256: str | None = Field(None, description="Pin: refuse a download whose hash differs")


class StyleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    synthetic: bool = False
    prompt_prefix: str = ""
    trigger_word: str = ""
    trainer: Literal["none", "replicate", "fal", "local"] = "none"
    training_steps: int = Field(1000, ge=10, le=10000)
    lora_rank: int = Field(16, ge=1, le=128)
    lora: ExistingLora | None = None
    quality: QualitySection | None = Field(None, description="The quality gate's limits for this style's books "
                                                             "(README: tuning a style's gate)")


class StyleError(ValueError):
    pass


class DatasetItem(BaseModel):
    image: str
    caption: str
    sha256: str
    width: int
    height: int


def style_names(styles_dir: Path) -> list[str]:
    """Every folder under the styles folder with a valid slug name is a style (a style partition)."""
    if not styles_dir.is_dir():
        return []
    return sorted(p.name for p in styles_dir.iterdir() if p.is_dir() and is_slug(p.name))


def load_style_config(style_dir: Path) -> StyleConfig:
    path = style_dir / "style.yaml"
    if not path.is_file():
        raise StyleError(f"{path}: missing; every style folder needs a style.yaml")
    try:
        return StyleConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as exc:
        raise StyleError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except ValidationError as exc:
        # One line per problem, each naming its field (e.g. quality.max_clipping), not pydantic's report.
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                             for e in exc.errors())
        raise StyleError(f"{path}: {problems}") from None


def dataset_items(style_dir: Path) -> list[DatasetItem]:
    image_dir = style_dir / "images"
    images = sorted(p for p in image_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not MIN_IMAGES <= len(images) <= MAX_IMAGES:
        raise StyleError(f"{image_dir}: {len(images)} images; a style dataset needs {MIN_IMAGES}-{MAX_IMAGES}")
    items = []
    for path in images:
        caption_path = path.with_suffix(".txt")
        if not caption_path.is_file():
            raise StyleError(f"{caption_path}: missing caption for {path.name}")
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
        items.append(DatasetItem(image=path.name, caption=caption_path.read_text().strip(),
                                 sha256=hashlib.sha256(data).hexdigest(), width=width, height=height))
    return items


def dataset_hash(items: list[DatasetItem], config: StyleConfig) -> str:
    # The gate's limits are not part of the dataset: tuning them must not retrain a LoRA or change the
    # dataset's version (and hashes of styles from before the field existed stay as they were).
    digest = hashlib.sha256(config.model_dump_json(exclude={"quality"}).encode())
    for item in items:
        digest.update(f"{item.image}\0{item.sha256}\0{item.caption}\n".encode())
    return digest.hexdigest()


def inputs_hash(items: list[DatasetItem], config: StyleConfig) -> str:
    """Everything the style's assets are built from, the gate's limits included (they set the dataset's stored
    calibration): equal hashes mean materializing the style again would write what is stored."""
    whole = hashlib.sha256(config.model_dump_json().encode())
    whole.update(dataset_hash(items, config).encode())
    return whole.hexdigest()


def style_inputs_hash(style_dir: Path) -> str:
    """inputs_hash of a style folder as it is now (StyleError naming the file when it is malformed)."""
    return inputs_hash(dataset_items(style_dir), load_style_config(style_dir))


def dataset_zip(style_dir: Path, items: list[DatasetItem], trigger_word: str) -> bytes:
    """The layout the cloud trainers expect: image files with same-named .txt captions."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for item in items:
            info = zipfile.ZipInfo(item.image, date_time=(2020, 1, 1, 0, 0, 0))  # fixed date: stable hash
            zf.writestr(info, (style_dir / "images" / item.image).read_bytes())
            caption = item.caption if not trigger_word or trigger_word in item.caption else f"{trigger_word}, {item.caption}"
            zf.writestr(zipfile.ZipInfo(Path(item.image).with_suffix(".txt").name, date_time=(2020, 1, 1, 0, 0, 0)),
                        caption)
    return out.getvalue()


def dataset_palette(style_dir: Path, items: list[DatasetItem], colours: int = 6) -> list[str]:
    """The style's dominant colours, most common first: what a preview paints with."""
    thumbs = []
    for item in items:
        with Image.open(style_dir / "images" / item.image) as im:
            thumbs.append(im.convert("RGB").resize((64, 64)))
    sheet = Image.new("RGB", (64 * len(thumbs), 64))
    for i, thumb in enumerate(thumbs):
        sheet.paste(thumb, (64 * i, 0))
    quantized = sheet.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette()[: colours * 3]
    counts = sorted(quantized.getcolors(), reverse=True)
    return ["#%02x%02x%02x" % tuple(palette[3 * idx: 3 * idx + 3]) for _, idx in counts]
