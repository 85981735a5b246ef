"""The preview proof as printed: one PREVIEW watermark, caption and label inside the safe area, character labels
clear of the text panel, and a token per character that tells the characters apart. Judged on real renders and on
the PDF pdf.py builds from them, read back with pypdf."""

from __future__ import annotations

import io
from itertools import combinations

import pytest
from PIL import Image

from bookbug_assets.pdf import PdfPage, PdfSpec, build_book_pdf
from bookbug_assets.providers.base import CharacterToken, ImageRequest
from bookbug_assets.providers.preview import (
    DEFAULT_PALETTE, PREVIEW_MODEL, _hex, character_token_style, render_preview, token_layout,
)
from tests.test_pdf import _text_runs

pypdf = pytest.importorskip("pypdf")

SPEC = PdfSpec(dpi=150)  # the example book's 8.5 in trim, 0.125 in bleed and 0.5 in safe margin; faster to build
MEDIA = (8.5 + 2 * 0.125) * 72
SAFE = (0.125 + 0.5) * 72
SIZE = 1024  # rendering.render_size for a square book
PIGS = (CharacterToken(id="straw-pig", name="Percy"), CharacterToken(id="stick-pig", name="Peter"),
        CharacterToken(id="brick-pig", name="Poppy"))
LONG_TEXT = ("The first little pig built his house of straw, because it was the quickest and the easiest, and he "
             "sang while he worked. The second little pig built his house of sticks, which took a little longer. "
             "The third little pig worked all day and all night laying bricks, one on top of another, until his "
             "house stood strong and square against the wind, and the wolf, watching from the hill, licked his lips "
             "and waited for the dark.") * 2


def request(kind: str = "page", characters=PIGS, palette=(), scene: str = "", label: str = "page 3") -> ImageRequest:
    return ImageRequest(provider="preview", model=PREVIEW_MODEL, kind=kind, prompt="p", width=SIZE, height=SIZE,
                        seed=7, characters=characters, palette=palette, label=label,
                        scene=scene or "The three little pigs build their houses while the big bad wolf watches "
                                       "from the hill, licking his lips and planning a visit after dark.")


def render(req: ImageRequest) -> Image.Image:
    return Image.open(io.BytesIO(render_preview(req))).convert("RGB")


def drawn_rows(img: Image.Image) -> set[int]:
    """Rows holding anything but background (the palette's sky, ground and clouds): caption, tokens, labels."""
    background = {_hex(c) for c in DEFAULT_PALETTE}
    px = img.load()
    return {y for y in range(img.height) if any(px[x, y] not in background for x in range(0, img.width, 2))}


@pytest.mark.parametrize("kind,label", [("page", "page 3"), ("hero_page", "cover")])
def test_caption_label_and_tokens_lie_inside_the_safe_area(kind, label):
    img = render(request(kind, label=label))
    inset = SAFE / MEDIA * SIZE  # 0.625 in of 8.75 in
    background = {_hex(c) for c in DEFAULT_PALETTE}
    px = img.load()
    outside = [(x, y) for y in range(SIZE) for x in range(SIZE)
               if not (inset <= x < SIZE - inset and inset <= y < SIZE - inset) and px[x, y] not in background]
    assert outside == [], f"{len(outside)} drawn pixels outside the safe area, e.g. {outside[:3]}"
    assert drawn_rows(img), "nothing drawn"


@pytest.fixture(scope="module")
def proof_book(tmp_path_factory):
    d = tmp_path_factory.mktemp("proof")
    cover, page = d / "cover.png", d / "page.png"
    render(request("hero_page", label="cover", scene="The Three Little Pigs")).save(cover)
    render(request("page")).save(page)
    blank = d / "blank.png"  # no characters, white palette: any red in it would be a stamp of the image's own
    render(request("page", characters=(), palette=("#ffffff", "#ffffff"), scene="An empty page")).save(blank)
    result = build_book_pdf(title="The Three Little Pigs", author="Joseph Jacobs", spec=SPEC,
                            cover=PdfPage(cover, "", True, "cover"),
                            pages=[PdfPage(page, LONG_TEXT, True, "page 1"),
                                   PdfPage(blank, "The end.", True, "page 2")],
                            out_path=d / "book.pdf")
    return pypdf.PdfReader(result.path), {"cover": cover, "page": page}


def _pdf_y_span(row: int) -> tuple[float, float]:
    """A preview row's bottom and top in PDF points (the square image fills the square page)."""
    return MEDIA * (1 - (row + 1) / SIZE), MEDIA * (1 - row / SIZE)


def test_character_labels_and_caption_stay_clear_of_the_page_text_panel(proof_book):
    reader, images = proof_book
    runs = [r for r in _text_runs(reader.pages[1]) if r[4] and "PREVIEW" not in r[0]]
    assert runs and all(top < MEDIA / 2 for *_, top in runs), "the story text went to the calm bottom"
    panel_top = max(top for *_, top in runs) + 12  # pdf._fit_panel pads at most 0.5 x 24 pt
    assert panel_top - SAFE > 0.3 * (MEDIA - 2 * SAFE), "the text should fill a tall panel for this test"
    crossing = [row for row in drawn_rows(Image.open(images["page"]).convert("RGB"))
                if _pdf_y_span(row)[0] < panel_top]
    assert crossing == [], f"preview rows {min(crossing)}..{max(crossing)} lie under the text panel"


def test_the_cover_caption_and_tokens_stay_clear_of_the_title_panel(proof_book):
    reader, images = proof_book
    runs = [r for r in _text_runs(reader.pages[0]) if r[4] and "PREVIEW" not in r[0]]
    assert "Three Little" in " ".join(r[0] for r in runs)
    panel_bottom = min(bottom for *_, bottom, _ in runs) - 24  # the 48 pt title's padding at most
    crossing = [row for row in drawn_rows(Image.open(images["cover"]).convert("RGB"))
                if _pdf_y_span(row)[1] > panel_bottom]
    assert crossing == [], f"cover rows {min(crossing)}..{max(crossing)} lie under the title panel"


def test_preview_is_marked_once_per_page_by_the_pdf_not_again_in_the_art(proof_book):
    reader, _ = proof_book
    for page in reader.pages:
        assert page.extract_text().count("PREVIEW") == 1
    art = reader.pages[2].images[0].image.convert("RGB")
    red = sum(1 for r, g, b in art.getdata() if r - g > 60 and r - b > 60)
    assert red == 0, f"{red} red pixels: the art carries a PREVIEW stamp of its own"


def _token_crop(img: Image.Image, cx: float, cy: float, r: float) -> Image.Image:
    """The token alone (its mark included), without the name label under it."""
    return img.crop((round(cx - 1.3 * r), round(cy - 1.3 * r), round(cx + 1.3 * r), round(cy + 1.25 * r)))


def _masks(crop: Image.Image, color: tuple[int, int, int]) -> tuple[set, set]:
    """(silhouette, glyph): pixels drawn in the token's ink or colour, and the white initials' pixels."""
    px = crop.load()
    silhouette, glyph = set(), set()
    for y in range(crop.height):
        for x in range(crop.width):
            p = px[x, y]
            if p == color or max(p) < 60:
                silhouette.add((x, y))
            elif min(p) > 235:
                glyph.add((x, y))
    return silhouette, glyph


def _differ(a: set, b: set) -> float:
    return len(a ^ b) / max(1, len(a | b))


@pytest.mark.parametrize("cast", [PIGS, tuple(CharacterToken(id=f"pig-{i}", name="Pig") for i in (1, 2, 3))],
                         ids=["straw-stick-brick", "pig-1-2-3"])
def test_three_pigs_get_tokens_that_tell_them_apart(cast):
    """Not three "P" tokens of one shape: every pair differs in silhouette (shape, mark) or in the initials drawn
    on it, not in colour alone."""
    img = render(request("page", characters=cast, palette=("#f4e9d8", "#f4e9d8")))
    placed = token_layout(request("page", characters=cast))
    masks = {p.token.id: _masks(_token_crop(img, p.cx, p.cy, p.r), character_token_style(p.token.id).color)
             for p in placed}
    for a, b in combinations(masks, 2):
        (sa, ga), (sb, gb) = masks[a], masks[b]
        assert max(_differ(sa, sb), _differ(ga, gb)) > 0.1, f"{a} and {b} have the same token"
    assert len({character_token_style(t.id).initials for t in cast}) > 1


def test_a_character_keeps_its_token_on_every_page():
    alone = request("page", characters=PIGS[:1], palette=("#f4e9d8", "#f4e9d8"))
    together = request("page", characters=PIGS, palette=("#f4e9d8", "#f4e9d8"), scene="another scene")
    color = character_token_style(PIGS[0].id).color
    (one,), first = [p for p in token_layout(alone)], render(alone)
    other = next(p for p in token_layout(together) if p.token == PIGS[0])
    assert one.r == other.r
    a = _masks(_token_crop(first, one.cx, one.cy, one.r), color)
    b = _masks(_token_crop(render(together), other.cx, other.cy, other.r), color)
    assert _differ(a[0], b[0]) < 0.02 and _differ(a[1], b[1]) < 0.02
