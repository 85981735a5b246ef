"""Bytes the fakes hand out: deterministic placeholder images, LoRA weight files
and the trainer's tar. Everything is derived from a seed string so the same
(model, input) always yields the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import zipfile
from typing import Any

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


def seed_for(model: str, inp: Any) -> str:
    return hashlib.sha256(f"{model}\n{json.dumps(inp, sort_keys=True, default=str)}".encode()).hexdigest()


def scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(8, int(round(size[0] * scale))), max(8, int(round(size[1] * scale)))


def render_image(
    seed: str,
    size: tuple[int, int],
    fmt: str = "png",
    *,
    black: bool = False,
    label: str = "",
    nominal: tuple[int, int] | None = None,
) -> bytes:
    """A flat-colour picture with a few shapes; cheap to encode, distinct per seed.

    PNG outputs carry tEXt chunks (fake_seed, fake_nominal_size, fake_label) so
    tests can tell which request produced a file and what size it stands for.
    """
    digest = hashlib.sha256(seed.encode()).digest()
    w, h = size
    if black:
        img = Image.new("RGB", size, (0, 0, 0))
    else:
        # Busy enough to pass the quality gates a real illustration passes (not blank, not blurred):
        # a sky-to-ground gradient and a few dozen outlined shapes, all derived from the seed.
        stream = hashlib.shake_256(seed.encode()).digest(8 * 32)
        top, bottom = tuple(96 + b // 2 for b in digest[:3]), tuple(32 + b // 2 for b in digest[3:6])
        img = Image.new("RGB", size, top)
        draw = ImageDraw.Draw(img)
        for y in range(h):  # one row at a time: 4-px bands would read as a patch grid
            t = y / max(1, h - 1)
            draw.line((0, y, w, y), fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
        for i in range(32):
            b = stream[i * 8:(i + 1) * 8]
            x0, y0 = b[0] * w // 256, b[1] * h // 256
            x1, y1 = x0 + max(4, b[2] * w // 768), y0 + max(4, b[3] * h // 768)
            shape = draw.ellipse if b[4] % 2 else draw.rectangle
            shape((x0, y0, x1, y1), fill=tuple(24 + v * 3 // 4 for v in b[5:8]), outline=(30, 30, 30),
                  width=max(1, w // 256))
        if label:
            draw.text((4, 4), label[:40], fill=(255, 255, 255))
    pil_fmt = _PIL_FORMATS.get(fmt.lower(), "PNG")
    buf = io.BytesIO()
    if pil_fmt == "PNG":
        info = PngInfo()
        info.add_text("fake_seed", seed)
        info.add_text("fake_nominal_size", "x".join(str(v) for v in (nominal or size)))
        if label:
            info.add_text("fake_label", label[:200])
        img.save(buf, "PNG", pnginfo=info)
    elif pil_fmt == "JPEG":
        img.save(buf, "JPEG", quality=85)
    else:
        img.save(buf, "WEBP", quality=80, method=0)
    return buf.getvalue()


def safetensors_bytes(rank: int = 16, metadata: dict[str, str] | None = None) -> bytes:
    """A valid (tiny) safetensors file with one LoRA A/B pair of the given rank."""
    tensors = {
        "transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight": [rank, 8],
        "transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight": [8, rank],
    }
    header: dict[str, Any] = {"__metadata__": {"format": "pt", **(metadata or {})}}
    data = b""
    for name, shape in tensors.items():
        n = shape[0] * shape[1]
        chunk = struct.pack(f"<{n}f", *([0.01] * n))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(chunk)]}
        data += chunk
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def zip_image_names(blob: bytes) -> list[str] | None:
    """Image members of a training zip, skipping macOS junk the trainer also skips; None if not a zip."""
    if not zipfile.is_zipfile(io.BytesIO(blob)):
        return None
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = [n for n in zf.namelist() if not n.startswith("__MACOSX/")]
    return [n for n in names if n.lower().endswith(IMAGE_SUFFIXES) and not n.rsplit("/", 1)[-1].startswith("._")]


def trainer_tar(weights: bytes, image_names: list[str], trigger_word: str,
                weights_path: str = "output/flux_train_replicate/lora.safetensors") -> bytes:
    """What replicate/flux-fine-tuner returns as `weights`: the LoRA plus the captions it used."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entries = [(weights_path, weights)]
        for name in image_names:
            stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            entries.append((f"captions/{stem}.txt", f"a photo in the style of {trigger_word}".encode()))
        for path, data in entries:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0  # deterministic archive bytes
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
