"""Ghostscript as an independent reader of the print files: it renders every page to CMYK and we measure the ink.

Our own preflight reads the images inside the PDF; a render also sees vector fills, text and anything drawn over
the art, through a PDF interpreter that is not ours. Pages are rendered with the `tiff32nc` device (8-bit CMYK,
https://ghostscript.readthedocs.io/en/latest/Devices.html#tiff-output-devices) at 72 dpi and the total ink is the
highest C+M+Y+K over 2 x 2 pixel areas (0.7 mm, the same area as the 8 x 8 blocks read at 300 ppi). DeviceCMYK
passes through unchanged: source and output both use Ghostscript's default CMYK profile, which it treats as the
identity (https://ghostscript.readthedocs.io/en/latest/GhostscriptColorManagement.html). Ghostscript's own
`inkcov` device (devices/gdevicov.c) gives the share of the page each ink touches, not the total per area, so
the render is read here instead. Ghostscript is the Debian package `ghostscript`; where it is absent the
preflight says so and measures the images only.

`redistill_pdfx` has Ghostscript write its own PDF/X from ours (pdfwrite with -dPDFX, -sColorConversionStrategy=CMYK
and its lib/PDFX_def.ps pointed at our output profile: https://ghostscript.readthedocs.io/en/latest/
VectorDevices.html#creating-a-pdf-x-document). Debian's Ghostscript 10.0 writes PDF/X-3:2002 only (its
PDFX_def.ps has no X-1a branch), so this is a cross-check, not the file we upload: the tests read its output back
with print_pdfx.py, so our checker is seen to accept a PDF/X written by someone else, boxes unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bookbug_assets.print_colour import max_area_ink_pct

GS_MISSING = "Ghostscript is not installed (apt-get install -y ghostscript): ink measured from the images only"
RENDER_DPI = 72
AREA_PX = 2
TIMEOUT_S = 600


@dataclass
class RenderedInk:
    max_ink_pct: list[float] = field(default_factory=list)   # per page, in page order
    errors: list[str] = field(default_factory=list)          # what Ghostscript said was wrong with the file


def ghostscript() -> str | None:
    return shutil.which("gs")


def _pdfx_def(profile: Path, folder: Path) -> Path:
    """Ghostscript's PDFX_def.ps with its placeholder profile replaced by ours (a PostScript string, escaped)."""
    run = subprocess.run([ghostscript(), "-q", "-dNODISPLAY", "-dSAFER", "-c", "(PDFX_def.ps) findlibfile { pop = } "
                          "{ pop (none) = } ifelse quit"], capture_output=True, text=True, timeout=60, check=False)
    found = Path(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else Path("none")
    if not found.is_file():
        raise RuntimeError("Ghostscript's lib/PDFX_def.ps was not found (is the ghostscript package complete?)")
    escaped = str(profile).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    text = found.read_text(encoding="latin-1").replace("(ISO Coated sb.icc)", f"({escaped})")
    out = folder / "PDFX_def.ps"
    out.write_text(text, encoding="latin-1")
    return out


def redistill_pdfx(src: str | Path, dst: str | Path, profile: Path) -> None:
    """Ghostscript's PDF/X (X-3:2002 in Ghostscript 10.0) of `src`, with `profile` as the output intent."""
    gs = ghostscript()
    if gs is None:
        raise FileNotFoundError(GS_MISSING)
    with tempfile.TemporaryDirectory(prefix="bookbug-gs-") as tmp:
        prefix = _pdfx_def(Path(profile), Path(tmp))
        cmd = [gs, "-q", "-dSAFER", f"--permit-file-read={Path(profile).parent}/", "-dBATCH", "-dNOPAUSE", "-dPDFX",
               "-sDEVICE=pdfwrite", "-sColorConversionStrategy=CMYK", f"-sOutputFile={dst}", str(prefix), str(src)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if run.returncode != 0 or not Path(dst).is_file():
        raise RuntimeError(f"Ghostscript could not write PDF/X from {Path(src).name}: "
                           f"{' '.join((run.stdout + run.stderr).split())[:300]}")


def render_ink(path: str | Path, dpi: int = RENDER_DPI) -> RenderedInk:
    """Every page's highest total ink (%) as Ghostscript renders it. Raises FileNotFoundError without gs, and
    RuntimeError (with Ghostscript's words) when it cannot render the file at all."""
    gs = ghostscript()
    if gs is None:
        raise FileNotFoundError(GS_MISSING)
    with tempfile.TemporaryDirectory(prefix="bookbug-gs-") as tmp:
        # -dSAFER: the file may come from anywhere; -dNOINTERPOLATE: images sampled as they are, not smoothed
        cmd = [gs, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-dNOINTERPOLATE", "-sDEVICE=tiff32nc", f"-r{dpi}",
               f"-sOutputFile={tmp}/page-%04d.tif", str(path)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        said = [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.strip()]
        if run.returncode != 0:
            raise RuntimeError(f"Ghostscript could not render {Path(path).name}: {' '.join(said[:5])}")
        result = RenderedInk(errors=[s for s in said if "error" in s.lower() or s.startswith("****")])
        for page in sorted(Path(tmp).glob("page-*.tif")):
            with Image.open(page) as im:
                result.max_ink_pct.append(max_area_ink_pct(np.asarray(im.convert("CMYK")), AREA_PX))
    return result
