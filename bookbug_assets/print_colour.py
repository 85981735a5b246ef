"""CMYK for PDF/X print files: the output profile they carry, the separation through it, and the ink limit.

The profile. PDF/X-1a wants an OutputIntent whose DestOutputProfile is the ICC profile of the printing condition
(ISO 15930-1; the PDF 1.3 reference, section 9.10.4 "Output Intents"). No CMYK printer profile with a licence that
lets this repository ship it is at hand: Debian's colord-data carries RGB profiles only, icc-profiles-free
carries the SWOP / GRACoL / FOGRA measurement data (.ti3, zlib licence) but no CMYK profile built from it, and
Ghostscript's "Artifex CMYK SWOP Profile" (iccprofiles/default_cmyk.icc, AGPL-3+ like the rest of Ghostscript per
Debian's copyright file for libgs-common) may be used where it is installed but not copied in here. So the profile
is found at run time: BOOKBUG_CMYK_ICC (a printer profile you are licensed to use, e.g. the one your printer
sends), else the one the Debian package `ghostscript` installs (through libgs-common); else a clear error that
names the package. IngramSpark's default "PDF/X-1a:2001" preset is U.S. Web Coated (SWOP), hence SWOP
(https://help.ingramspark.com/hc/en-us/articles/6443532453901).

The separation: sRGB -> the profile (littleCMS through Pillow's ImageCms, perceptual intent), then an ink limiter:
where C+M+Y+K is over the platform's limit, grey is moved from C, M and Y into K (each step takes 3 units of ink
out and puts 1 back), and what K cannot take is scaled off C, M and Y. IngramSpark: "CMYK total value should not
exceed 240%" (its File Creation Guide, quoted at https://community.adobe.com/t5/illustrator-discussions/
how-to-bulk-change-total-ink-coverage-to-the-240-required-by-printer/m-p/10836669).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

PROFILE_ENV = "BOOKBUG_CMYK_ICC"
INK_MARGIN_PCT = 5   # the limiter aims this far under the limit: JPEG coding moves values by a few units
# (path, Debian package, OutputConditionIdentifier, OutputCondition). The Artifex profile says "SWOP" and no more;
# that it is CGATS TR 001 exactly is UNCONFIRMED (the identifier is what Acrobat's SWOP preset writes).
SYSTEM_PROFILES = (
    (Path("/usr/share/color/icc/ghostscript/default_cmyk.icc"), "ghostscript (libgs-common)", "CGATS TR 001",
     "SWOP coated, US web offset (Artifex CMYK SWOP Profile)"),
)


PROFILE_HINT = f"install the Debian package ghostscript or set {PROFILE_ENV} to a CMYK printer profile"


class MissingIccProfile(ValueError):
    """No usable CMYK output profile: the message names the package to install or the file that is wrong."""


class NoCmykProfile(MissingIccProfile):
    """None configured and none installed (a wrong BOOKBUG_CMYK_ICC is a MissingIccProfile, never a fallback)."""


@dataclass(frozen=True)
class CmykProfile:
    path: Path
    data: bytes
    description: str
    source: str                 # the Debian package, or the environment variable
    condition_identifier: str
    condition: str


def icc_header(data: bytes) -> dict:
    """The fields of an ICC profile header a PDF/X check needs (ICC.1:2001-04, section 6.1)."""
    if len(data) < 132 or data[36:40] != b"acsp":
        raise ValueError("not an ICC profile (no 'acsp' signature)")
    size, = struct.unpack(">I", data[:4])
    return {"size": size, "major": data[8], "class": data[12:16].decode("latin-1"),
            "space": data[16:20].decode("latin-1").strip(), "pcs": data[20:24].decode("latin-1").strip()}


def output_profile_problem(data: bytes) -> str | None:
    """Why `data` cannot be a PDF/X-1a DestOutputProfile, or None: a whole ICC v2 CMYK output (printer) profile
    (PDF 1.3 reads ICC 3.3, that is version 2 profiles)."""
    try:
        h = icc_header(data)
    except ValueError as exc:
        return str(exc)
    if h["size"] != len(data):
        return f"the ICC profile is {len(data)} bytes, its header says {h['size']}"
    if h["class"] != "prtr" or h["space"] != "CMYK":
        return f"the ICC profile is a {h['class']} {h['space']} profile, PDF/X-1a wants a prtr CMYK (printer) one"
    if h["major"] != 2:
        return f"the ICC profile is version {h['major']}, PDF/X-1a:2001 (PDF 1.3) reads version 2 profiles only"
    return None


def _load(path: Path, source: str, identifier: str, condition: str) -> CmykProfile:
    data = path.read_bytes()
    if problem := output_profile_problem(data):
        raise MissingIccProfile(f"{path}: {problem}")
    description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(str(path))).strip()
    return CmykProfile(path, data, description, source, identifier, condition or description)


def find_cmyk_profile(env: dict | None = None) -> CmykProfile:
    """BOOKBUG_CMYK_ICC, else the profile a Debian package installed; MissingIccProfile names what to install."""
    env = os.environ if env is None else env
    chosen = env.get(PROFILE_ENV, "").strip()
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise MissingIccProfile(f"{PROFILE_ENV}={chosen}: no such file")
        return _cached(path, PROFILE_ENV, "Custom", "")
    for path, package, identifier, condition in SYSTEM_PROFILES:
        if path.is_file():
            return _cached(path, package, identifier, condition)
    raise NoCmykProfile(
        "no CMYK output ICC profile for PDF/X: install the Debian package ghostscript (apt-get install -y "
        f"ghostscript; it ships {SYSTEM_PROFILES[0][0]}) or set {PROFILE_ENV} to a CMYK printer profile")


@lru_cache(maxsize=4)
def _cached(path: Path, source: str, identifier: str, condition: str) -> CmykProfile:
    return _load(path, source, identifier, condition)


@lru_cache(maxsize=4)
def _transform(profile_path: Path) -> ImageCms.ImageCmsTransform:
    return ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.ImageCmsProfile(str(profile_path)),
                                   "RGB", "CMYK", renderingIntent=ImageCms.Intent.PERCEPTUAL)


def limit_ink(cmyk: np.ndarray, max_pct: float) -> np.ndarray:
    """CMYK (uint8, H x W x 4) with C+M+Y+K <= max_pct % everywhere: grey moved into K first, then C, M, Y
    scaled down where K is full."""
    cap = max_pct / 100 * 255
    out = np.array(cmyk, dtype=np.uint8, copy=True)
    flat = out.reshape(-1, 4)
    hot = np.flatnonzero(flat.sum(axis=1, dtype=np.int32) > cap)  # only the pixels over the limit change
    if hot.size == 0:
        return out
    x = flat[hot].astype(np.float32)
    cmy, k = x[:, :3], x[:, 3]
    over = x.sum(axis=1) - cap
    # moving g from each of C, M, Y into K lowers the total by 2g; g is bounded by the grey there and K's room
    g = np.clip(np.minimum(np.minimum(cmy.min(axis=1), 255 - k), over / 2), 0, None)
    cmy = cmy - g[:, None]
    k = k + g
    room = np.clip(cap - k, 0, None)
    total = cmy.sum(axis=1)
    scale = np.where(total > room, room / np.maximum(total, 1e-6), 1.0)
    limited = np.concatenate([cmy * scale[:, None], k[:, None]], axis=1)
    flat[hot] = np.floor(limited).clip(0, 255).astype(np.uint8)  # floor: rounding must not lift a pixel over the cap
    return out


def separate(img: Image.Image, profile: CmykProfile, max_ink_pct: float | None) -> Image.Image:
    """sRGB art -> CMYK for `profile`'s printing condition, within `max_ink_pct` (less a small margin)."""
    cmyk = ImageCms.applyTransform(img.convert("RGB"), _transform(profile.path))
    if max_ink_pct is None:
        return cmyk
    return Image.fromarray(limit_ink(np.asarray(cmyk), max_ink_pct - INK_MARGIN_PCT), "CMYK")


def max_area_ink_pct(cmyk: np.ndarray, block: int) -> float:
    """The highest total ink (%) over any `block` x `block` pixel area (ink limits are about areas, not pixels)."""
    h, w = (cmyk.shape[0] // block) * block, (cmyk.shape[1] // block) * block
    if h == 0 or w == 0:
        return float(cmyk.astype(np.float32).sum(axis=2).max() / 255 * 100) if cmyk.size else 0.0
    x = cmyk[:h, :w].astype(np.float32).reshape(h // block, block, w // block, block, 4).mean(axis=(1, 3))
    return float(x.sum(axis=2).max() / 255 * 100)
