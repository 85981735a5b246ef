import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from bookbug_assets.quality.synthetic import random_character, render_page


@pytest.fixture(scope="session")
def book():
    """One 'book': two characters from one palette family, pages painted only in that palette."""
    rng = np.random.default_rng(42)
    chars = [random_character(rng, "warm") for _ in range(2)]
    pages = [render_page(chars[i % 2], rng, 768, strict=True) for i in range(6)]
    return {"rng": rng, "chars": chars, "profile_pages": pages[:4], "new_pages": pages[4:]}


def add_grid(image: Image.Image, period: int = 16, amplitude: int = 6) -> Image.Image:
    """Brighten every period-th row and column: a patch-grid artifact."""
    a = np.asarray(image).astype(np.int16)
    yy, xx = np.mgrid[: a.shape[0], : a.shape[1]]
    lines = ((yy % period == 0) | (xx % period == 0)) * amplitude
    return Image.fromarray(np.clip(a + lines[..., None], 0, 255).astype(np.uint8))


def add_checker(image: Image.Image, period: int = 8, amplitude: int = 4) -> Image.Image:
    a = np.asarray(image).astype(np.int16)
    yy, xx = np.mgrid[: a.shape[0], : a.shape[1]]
    pat = ((((yy // period) + (xx // period)) % 2) * 2 - 1) * amplitude
    return Image.fromarray(np.clip(a + pat[..., None], 0, 255).astype(np.uint8))


def blur(image: Image.Image, radius: float = 3) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def oversaturate(image: Image.Image) -> Image.Image:
    return ImageEnhance.Contrast(ImageEnhance.Color(image).enhance(3)).enhance(1.5)


def hue_rotate(image: Image.Image, degrees: float) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(degrees / 360 * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")
