"""What each print-on-demand platform accepts: one table of rules and the plain geometry read from it.

Every number carries the public page it was read from. "UNCONFIRMED" marks a figure that only third-party
calculators or guides state, or that the platform's own page says differently in different places: check it
against the platform's cover template generator before the first proof copy. Units are inches throughout;
page counts are interior pages (every printed side, blank ones included, the cover not counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PLATFORMS = ("kdp", "ingramspark", "lulu", "generic")
BINDINGS = ("paperback", "hardcover")
PAPERS = ("white", "cream", "premium-color", "standard-color")
COLOUR_PAPERS = ("premium-color", "standard-color")
TRIM_TOLERANCE_IN = 0.01  # a trim given as 8.27 matches a listed 8.27; a rounding of the mm figure is not a new trim


@dataclass(frozen=True)
class BindingRules:
    papers: tuple[str, ...]
    trims: tuple[tuple[float, float], ...]            # the listed trims (width, height)
    custom_trim: tuple[float, float, float, float] | None = None   # w_min, w_max, h_min, h_max, or None
    min_pages: dict[str, int] = field(default_factory=dict)        # per paper
    max_pages: dict[str, int] = field(default_factory=dict)
    spine_per_page_in: dict[str, float] = field(default_factory=dict)
    spine_base_in: float = 0.0                        # added to pages x per-page (Lulu's cover allowance)
    spine_table: tuple[tuple[int, float], ...] = ()   # (up to pages, spine) where the platform uses a table
    wrap_in: float = 0.125                            # cover bleed (paperback) or board wrap (hardcover), each edge
    hinge_in: float = 0.0                             # hardcover hinge, each side of the spine


@dataclass(frozen=True)
class PlatformRules:
    name: str
    bleed_in: float
    bleed_edges: tuple[str, ...]                      # interior: "top", "bottom", "outside", "inside"
    safe_margin_in: float                             # text and key art from the trim, top/bottom/outside
    gutter_in: tuple[tuple[int, float], ...]          # (up to pages, inside margin from the trim)
    page_multiple: int                                # the page count is padded to a multiple of this
    last_page_blank: bool                             # the platform wants the last page blank (and adds one)
    max_blank_run: int | None                         # longest run of blank pages it accepts (None: no rule found)
    spine_text_min_pages: int
    spine_text_margin_in: float                       # keep spine text this far from each fold
    barcode_in: tuple[float, float]                   # keep-out box (w, h) at the bottom right of the back cover
    barcode_offset_in: tuple[float, float]            # its distance from the spine fold and from the bottom trim
    max_file_mb: float | None
    pdf_standard: str
    colour: str                                       # "RGB" (sRGB accepted) or "CMYK"
    total_ink_pct: int | None
    bindings: dict[str, BindingRules]
    # Written instead of pdf_standard (plain RGB) when no CMYK output profile is found, for a platform that also
    # takes a plain PDF; None: the platform's standard is required and the build fails naming what to install.
    pdf_fallback: str | None = None
    # The provenance XMP (pdf_xmp.py) may go into its files; the sidecar JSON keeps it for every platform.
    xmp_allowed: bool = True


# --- Amazon KDP --------------------------------------------------------------------------------------------
_KDP_TRIMS = ((5.0, 8.0), (5.06, 7.81), (5.25, 8.0), (5.5, 8.5), (6.0, 9.0), (6.14, 9.21), (6.69, 9.61),
              (7.0, 10.0), (7.44, 9.69), (7.5, 9.25), (8.0, 10.0), (8.25, 6.0), (8.25, 8.25), (8.5, 8.5),
              (8.5, 11.0), (8.27, 11.69))  # 17 standard US trims: https://30daypivot.com/kdp_spoke_creation
# Spine per page: Amazon's own CreateSpace cover page (KDP's predecessor, same factors quoted by KDP calculators):
# https://www.createspace.com/Products/Book/CoverPDF.jsp ("white 0.002252, cream 0.0025, color 0.002347").
_KDP_SPINE = {"white": 0.002252, "cream": 0.0025, "premium-color": 0.002347,
              "standard-color": 0.002347}  # standard colour: UNCONFIRMED (calculators say 0.002252 or 0.002347)
KDP = PlatformRules(
    name="Amazon KDP",
    # trim + 0.125 in wide, + 0.25 in tall; bleed on top, bottom and the outside edge only:
    # https://kdp.amazon.com/help?topicId=GVBQ3CMEQW3W2VL6
    bleed_in=0.125, bleed_edges=("top", "bottom", "outside"),
    # outside margin with bleed >= 0.375 in; gutter by page count: https://kdp.amazon.com/help?topicId=GVBQ3CMEQW3W2VL6 (margins table)
    # and https://kdpbuilder.com/guides/kdp-bleed-and-margins (KDP's own table: UNCONFIRMED, page not in reach)
    safe_margin_in=0.375,
    gutter_in=((150, 0.375), (300, 0.5), (500, 0.625), (700, 0.75), (828, 0.875)),
    # KDP recommends an even count but does not require it: https://publishing.co.uk/guides/kdp-error-page-count-rules/
    page_multiple=2, last_page_blank=False,
    # "No more than 2 consecutive blank pages": https://authorityagency.com/courses/book-publishing-printing-guides/
    # hardcover-publishing-with-kdp/kdp-hardcover-interior-formatting-requirements/ (UNCONFIRMED for the end pages)
    max_blank_run=2,
    spine_text_min_pages=79,  # https://kdp.amazon.com/en_US/help/topic/G201953020 ("at least 79 pages")
    spine_text_margin_in=0.0625,  # UNCONFIRMED: https://thefastfingers.com/specification-requirements-for-a-createspace-book-cover/
    # 2 x 1.2 in, 0.25 in from the spine and the bottom trim: UNCONFIRMED (third-party):
    # https://kdpprintcover.com/blog/how-to-design-kdp-back-cover
    barcode_in=(2.0, 1.2), barcode_offset_in=(0.25, 0.25),
    max_file_mb=650,  # https://kdp.amazon.com/en_US/help/topic/G201857950 and .../G201953020
    # KDP's own page asks for a PDF (bleed books), fonts embedded and transparency flattened, no PDF/X version:
    # https://kdp.amazon.com/en_US/help/topic/G201857950 . PDF/X-1a is what print guides recommend for KDP
    # (third-party, UNCONFIRMED as KDP's wording): https://changethisfile.com/blog/convert-pdfs-for-kindle-direct-publishing
    # So PDF/X-1a:2001 is written when a CMYK profile is at hand, and a plain RGB PDF otherwise (KDP converts it).
    # No ink limit found on KDP's pages.
    pdf_standard="PDF/X-1a:2001", colour="CMYK", total_ink_pct=None,
    bindings={
        "paperback": BindingRules(
            papers=PAPERS, trims=_KDP_TRIMS,
            # custom paperback trims: width 4-8.5 in, height 6-11.69 in: https://30daypivot.com/kdp_spoke_creation
            custom_trim=(4.0, 8.5, 6.0, 11.69),
            # 24 pages (72 for standard colour) up to 828/776/600/828: http://bookbolt.kb.help/kdp-publishing-what-is-
            # the-minimum-maximum-number-of-pages-you-can-use-in-a-book-and-the-royalty-amount/ (KDP's Print Options)
            min_pages={"white": 24, "cream": 24, "premium-color": 24, "standard-color": 72},
            max_pages={"white": 828, "cream": 776, "premium-color": 828, "standard-color": 600},
            spine_per_page_in=_KDP_SPINE, wrap_in=0.125),  # cover bleed 0.125 in: .../G201953020
        "hardcover": BindingRules(
            papers=("white", "cream", "premium-color"),
            # five case-laminate trims, 75-550 pages: https://kdpprintcover.com/blog/understanding-kdp-hardcover-wrap-hinge
            trims=((5.5, 8.5), (6.0, 9.0), (6.14, 9.21), (7.0, 10.0), (8.25, 11.0)),
            min_pages={p: 75 for p in ("white", "cream", "premium-color")},
            max_pages={p: 550 for p in ("white", "cream", "premium-color")},
            # UNCONFIRMED: hardcover spine "about 0.28 in wider than paperback":
            # https://www.kdpeasy.com/blog/kdp-hardcover-paperback-cover-specs
            spine_per_page_in=_KDP_SPINE, spine_base_in=0.28,
            # UNCONFIRMED: wrap 0.591 in, hinge 0.197 in: https://kdpprintcover.com/blog/hardcover-case-laminate-dimensions-guide/
            wrap_in=0.591, hinge_in=0.197),
    },
    pdf_fallback="PDF",
    # "Submitted files should not contain ... metadata": https://kdp.amazon.com/en_US/help/topic/G201857950
    xmp_allowed=False)
# Large trims cap lower (8.5 x 8.5 and 8.5 x 11: white 590, cream 550, premium colour 590), same source as above.
KDP_LARGE_TRIM_MAX = {(8.5, 8.5): {"white": 590, "cream": 550, "premium-color": 590},
                      (8.5, 11.0): {"white": 590, "cream": 550, "premium-color": 590}}

# --- IngramSpark / Lightning Source ------------------------------------------------------------------------
# UNCONFIRMED list (IngramSpark's trim list is behind its account pages); 11 x 8.5 landscape:
# https://oldmatemedia.com/new-trim-size/ ; square picture-book trims: https://cambric.pages.dev/guides/format-childrens-book-for-ingramspark
_INGRAM_TRIMS = ((5.0, 8.0), (5.5, 8.5), (6.0, 9.0), (7.0, 10.0), (8.0, 8.0), (8.0, 10.0), (8.25, 8.25),
                 (8.5, 8.5), (8.5, 11.0), (11.0, 8.5), (8.25, 11.0))
# white 50 lb 0.002252, creme 0.0025: https://cambric.pages.dev/guides/ingramspark-cover-template-mismatch ;
# colour stocks UNCONFIRMED (taken as KDP's colour factor; IngramSpark's template generator gives the real one)
_INGRAM_SPINE = {"white": 0.002252, "cream": 0.0025, "premium-color": 0.002347, "standard-color": 0.002347}
INGRAMSPARK = PlatformRules(
    name="IngramSpark",
    # 0.125 in on every side for picture books (third-party, UNCONFIRMED): https://cambric.pages.dev/guides/format-childrens-book-for-ingramspark
    bleed_in=0.125, bleed_edges=("top", "bottom", "outside", "inside"),
    # text and non-bleed art >= 0.5 in from the trim: https://www.ingramspark.com/blog/file-requirements-for-print-books
    safe_margin_in=0.5,
    gutter_in=((150, 0.5), (400, 0.625), (600, 0.75), (1200, 0.875)),  # UNCONFIRMED: https://cambric.pages.dev/guides/8-5x11-ingramspark-specs
    # "The final page should be blank. If there is no blank page, we'll add one": same blog page as above
    page_multiple=2, last_page_blank=True, max_blank_run=None,
    spine_text_min_pages=48,  # UNCONFIRMED: https://bookcoverslab.com/fr/ingramspark-cover-creator
    spine_text_margin_in=0.0625,  # 1/16 in binding variance: https://help.ingramspark.com/hc/en-us/articles/5338636202637
    barcode_in=(2.0, 1.2), barcode_offset_in=(0.25, 0.25),  # UNCONFIRMED: https://cambric.pages.dev/guides/ingramspark-cover-template-mismatch
    max_file_mb=None,  # no limit found on IngramSpark's pages
    # PDF/X-1a:2001 is the default that prints black text right: https://help.ingramspark.com/hc/en-us/articles/6443532453901
    # CMYK required: https://help.ingramspark.com/hc/en-us/articles/5338619119245
    pdf_standard="PDF/X-1a:2001", colour="CMYK",
    # "recommended maximum is 240%" (IngramSpark support, quoted): https://humblequill.com/2019/03/14/fixing-ingramsparks-ink-coverage-error/
    total_ink_pct=240,
    bindings={
        "paperback": BindingRules(
            papers=PAPERS, trims=_INGRAM_TRIMS,
            # UNCONFIRMED minimum 18 pages: https://docs.rs/kernsetzer-model/latest/setzer_model/presets/constant.INGRAM_MIN_PAGES.html
            min_pages={p: 18 for p in PAPERS}, max_pages={p: 1200 for p in PAPERS},  # max UNCONFIRMED
            spine_per_page_in=_INGRAM_SPINE, wrap_in=0.125),
        "hardcover": BindingRules(
            papers=PAPERS, trims=_INGRAM_TRIMS,
            min_pages={p: 24 for p in PAPERS}, max_pages={p: 1200 for p in PAPERS},  # UNCONFIRMED
            # UNCONFIRMED: case-laminate board allowance, wrap and hinge (IngramSpark's template generator has them)
            spine_per_page_in=_INGRAM_SPINE, spine_base_in=0.25, wrap_in=0.75, hinge_in=0.375),
    })

# --- Lulu --------------------------------------------------------------------------------------------------
# UNCONFIRMED list of Lulu's sizes (pocket, digest, US trade, executive, royal, crown quarto, square, small square,
# US letter, landscape, A5, A4): https://help.lulu.com/en/support/solutions/articles/64000255583-tips-for-formatting-documents
_LULU_TRIMS = ((4.25, 6.875), (5.5, 8.5), (6.0, 9.0), (7.0, 10.0), (6.14, 9.21), (7.44, 9.68), (8.5, 8.5),
               (7.5, 7.5), (8.5, 11.0), (9.0, 7.0), (5.83, 8.27), (8.27, 11.69))
# Hardcover casewrap spine by page range: https://help.api.lulu.com/en/support/solutions/articles/64000254616
_LULU_CASEWRAP = ((84, 0.25), (140, 0.5), (168, 0.625), (194, 0.6875), (222, 0.75), (250, 0.8125), (278, 0.875),
                  (306, 0.9375), (334, 1.0), (360, 1.0625), (388, 1.125), (416, 1.1875), (444, 1.25), (472, 1.3125),
                  (500, 1.375), (528, 1.4375), (556, 1.5), (582, 1.5625), (610, 1.625), (638, 1.6875), (666, 1.75),
                  (694, 1.8125), (722, 1.875), (750, 1.9375), (778, 2.0), (800, 2.0625))
LULU = PlatformRules(
    name="Lulu",
    # 0.125 in on every side, safety margin 0.5 in: https://help.lulu.com/en/support/solutions/articles/64000255584
    bleed_in=0.125, bleed_edges=("top", "bottom", "outside", "inside"), safe_margin_in=0.5,
    # "Most books will require a gutter of 0.2 - 0.3 in" on top of the 0.5 in: .../64000255583-tips-for-formatting-documents
    gutter_in=((800, 0.7),),
    page_multiple=2, last_page_blank=False, max_blank_run=None,  # even count UNCONFIRMED as a Lulu rule
    # spine text from 80 pages (Lulu's help, quoted): https://connect.lulu.com/en/discussion/343028/spine-for-books-with-80-130-pages-for-retail-partners
    spine_text_min_pages=80, spine_text_margin_in=0.0625,  # margin UNCONFIRMED
    barcode_in=(2.0, 1.2), barcode_offset_in=(0.25, 0.25),  # UNCONFIRMED (Lulu's templates show the box)
    max_file_mb=None,  # no limit found on Lulu's pages
    # full-colour printers run sRGB; CMYK gets converted: https://help.lulu.com/en/support/solutions/articles/64000255590
    pdf_standard="PDF", colour="RGB", total_ink_pct=None,
    bindings={
        "paperback": BindingRules(
            papers=PAPERS, trims=_LULU_TRIMS,
            # paperback >= 32 pages, hardcover >= 24 (Lulu's spine width calculator PDF):
            # https://www.scribd.com/document/513281500/lulu-spine-width-calculator ; maximum UNCONFIRMED
            min_pages={p: 32 for p in PAPERS}, max_pages={p: 800 for p in PAPERS},
            # (pages / 444) + 0.06 in: https://help.api.lulu.com/en/support/solutions/articles/64000254616
            spine_per_page_in={p: 1 / 444 for p in PAPERS}, spine_base_in=0.06, wrap_in=0.125),
        "hardcover": BindingRules(
            papers=PAPERS, trims=_LULU_TRIMS,
            min_pages={p: 24 for p in PAPERS}, max_pages={p: 800 for p in PAPERS},
            spine_table=_LULU_CASEWRAP,
            wrap_in=0.75, hinge_in=0.0),  # UNCONFIRMED casewrap wrap (Lulu's template generator has it)
    })

# --- generic: today's proof (book_pdf geometry), a cover at a typical 0.0025 in per page -------------------------
GENERIC = PlatformRules(
    name="generic proof", bleed_in=0.125, bleed_edges=("top", "bottom", "outside", "inside"), safe_margin_in=0.5,
    gutter_in=((10_000, 0.5),), page_multiple=2, last_page_blank=False, max_blank_run=None,
    spine_text_min_pages=80, spine_text_margin_in=0.0625, barcode_in=(2.0, 1.2), barcode_offset_in=(0.25, 0.25),
    max_file_mb=None, pdf_standard="PDF", colour="RGB", total_ink_pct=None,
    bindings={b: BindingRules(papers=PAPERS, trims=(), custom_trim=(4.0, 14.0, 4.0, 14.0),
                              min_pages={p: 1 for p in PAPERS}, max_pages={p: 10_000 for p in PAPERS},
                              spine_per_page_in={p: 0.0025 for p in PAPERS},
                              wrap_in=0.125 if b == "paperback" else 0.75, hinge_in=0.0 if b == "paperback" else 0.375)
              for b in BINDINGS})

RULES = {"kdp": KDP, "ingramspark": INGRAMSPARK, "lulu": LULU, "generic": GENERIC}


def rules(platform: str) -> PlatformRules:
    if platform not in RULES:
        raise ValueError(f"unknown print platform {platform!r}; choose one of {', '.join(PLATFORMS)}")
    return RULES[platform]


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= TRIM_TOLERANCE_IN


def trim_offered(binding: BindingRules, width: float, height: float) -> bool:
    if any(_same(w, width) and _same(h, height) for w, h in binding.trims):
        return True
    c = binding.custom_trim
    return c is not None and c[0] - 1e-9 <= width <= c[1] + 1e-9 and c[2] - 1e-9 <= height <= c[3] + 1e-9


def target_problem(platform: str, binding: str, paper: str, width: float, height: float) -> tuple[str, str] | None:
    """(field, why) when the platform does not offer this binding, paper or trim; None when it does."""
    r = rules(platform)
    b = r.bindings.get(binding)
    if b is None:
        return "binding", f"{r.name} offers no {binding} binding"
    if paper not in b.papers:
        return "paper", f"{r.name} {binding} is not printed on {paper} paper (choose {', '.join(b.papers)})"
    if not trim_offered(b, width, height):
        listed = ", ".join(f"{w:g} x {h:g}" for w, h in b.trims) or "none"
        custom = f"; custom {b.custom_trim[0]:g}-{b.custom_trim[1]:g} x {b.custom_trim[2]:g}-{b.custom_trim[3]:g} in" \
            if b.custom_trim else ""
        return "trim", f"{r.name} {binding} does not offer a {width:g} x {height:g} in trim (offers {listed}{custom})"
    return None


# --- page counts ---------------------------------------------------------------------------------------------

def page_limits(platform: str, binding: str, paper: str, width: float, height: float) -> tuple[int, int]:
    b = rules(platform).bindings[binding]
    high = b.max_pages[paper]
    if platform == "kdp" and binding == "paperback":
        high = next((caps.get(paper, high) for (w, h), caps in KDP_LARGE_TRIM_MAX.items()
                     if _same(w, width) and _same(h, height)), high)
    return b.min_pages[paper], high


@dataclass(frozen=True)
class PagePlan:
    content_pages: int
    total_pages: int
    reasons: tuple[str, ...]  # why pages were added, for the metadata

    @property
    def blank_pages_added(self) -> int:
        return self.total_pages - self.content_pages


def plan_pages(platform: str, binding: str, paper: str, content_pages: int, width: float, height: float) -> PagePlan:
    """Pad `content_pages` with blank pages at the end to what the platform prints; never drops a page
    (too many pages is a ValueError naming the limit)."""
    r = rules(platform)
    low, high = page_limits(platform, binding, paper, width, height)
    if content_pages < 1:
        raise ValueError("a book needs at least one page")
    total, reasons = content_pages, []
    if total < low:
        reasons.append(f"{r.name} {binding} on {paper} needs at least {low} pages: {low - total} blank added")
        total = low
    if r.last_page_blank and total == content_pages:  # padding already ends the book on a blank page
        reasons.append(f"{r.name} wants the last page blank: 1 blank added")
        total += 1
    if total % r.page_multiple:
        added = r.page_multiple - total % r.page_multiple
        reasons.append(f"page count rounded to a multiple of {r.page_multiple}: {added} blank added")
        total += added
    if total > high:
        raise ValueError(f"{content_pages} pages is more than {r.name} {binding} on {paper} prints ({high} at most)")
    return PagePlan(content_pages, total, tuple(reasons))


def gutter_in(platform: str, pages: int) -> float:
    table = rules(platform).gutter_in
    return next((g for up_to, g in table if pages <= up_to), table[-1][1])


# --- geometry --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InteriorPage:
    """One interior page: the media box, where the trim sits in it, and the safe box for text (inches, PDF axes:
    x to the right, y up, origin at the bottom left of the media box)."""

    media: tuple[float, float]
    trim: tuple[float, float, float, float]
    safe: tuple[float, float, float, float]
    bleed_edges: tuple[str, ...]
    recto: bool


def interior_page(platform: str, width: float, height: float, number: int, pages: int,
                  bleed_in: float | None = None, safe_margin_in: float = 0.0) -> InteriorPage:
    """Page `number` (1-based; odd pages are right-hand, rectos) of a `pages`-page interior. `bleed_in` overrides the
    bleed for the generic proof (the story's own); `safe_margin_in` can only widen the platform's margins."""
    r = rules(platform)
    bleed = r.bleed_in if bleed_in is None or platform != "generic" else bleed_in
    recto = number % 2 == 1
    outside = "right" if recto else "left"
    edges = {"top": bleed if "top" in r.bleed_edges else 0.0, "bottom": bleed if "bottom" in r.bleed_edges else 0.0,
             outside: bleed if "outside" in r.bleed_edges else 0.0}
    inside = "left" if recto else "right"
    edges[inside] = bleed if "inside" in r.bleed_edges else 0.0
    media = (width + edges["left"] + edges["right"], height + edges["top"] + edges["bottom"])
    trim = (edges["left"], edges["bottom"], edges["left"] + width, edges["bottom"] + height)
    margin = max(r.safe_margin_in, safe_margin_in)
    gutter = max(margin, gutter_in(platform, pages))
    left, right = (gutter, margin) if recto else (margin, gutter)
    safe = (trim[0] + left, trim[1] + margin, trim[2] - right, trim[3] - margin)
    return InteriorPage(media=media, trim=trim, safe=safe, bleed_edges=tuple(e for e, v in edges.items() if v > 0),
                        recto=recto)


def spine_width_in(platform: str, binding: str, paper: str, pages: int) -> float:
    b = rules(platform).bindings[binding]
    if b.spine_table:
        return next((w for up_to, w in b.spine_table if pages <= up_to), b.spine_table[-1][1])
    return pages * b.spine_per_page_in[paper] + b.spine_base_in


@dataclass(frozen=True)
class CoverSpread:
    """The one-piece cover, laid flat: wrap/bleed | back | hinge | spine | hinge | front | wrap/bleed (inches, PDF
    axes). `back` and `front` are the trimmed panels; `barcode` is the keep-out box on the back cover."""

    width: float
    height: float
    wrap: float
    hinge: float
    spine: tuple[float, float]            # x0, x1 of the spine
    back: tuple[float, float, float, float]
    front: tuple[float, float, float, float]
    barcode: tuple[float, float, float, float]
    spine_text: bool
    spine_width: float
    pages: int

    @property
    def trim(self) -> tuple[float, float, float, float]:
        return (self.wrap, self.wrap, self.width - self.wrap, self.height - self.wrap)


def cover_spread(platform: str, binding: str, paper: str, width: float, height: float, pages: int) -> CoverSpread:
    r = rules(platform)
    b = r.bindings[binding]
    spine = spine_width_in(platform, binding, paper, pages)
    wrap, hinge = b.wrap_in, b.hinge_in
    back = (wrap, wrap, wrap + width, wrap + height)
    s0 = back[2] + hinge
    s1 = s0 + spine
    front = (s1 + hinge, wrap, s1 + hinge + width, wrap + height)
    bw, bh = r.barcode_in
    off_spine, off_bottom = r.barcode_offset_in
    bx1 = back[2] - off_spine
    barcode = (bx1 - bw, wrap + off_bottom, bx1, wrap + off_bottom + bh)
    text_ok = pages >= r.spine_text_min_pages and spine > 2 * r.spine_text_margin_in + 0.05
    return CoverSpread(width=front[2] + wrap, height=height + 2 * wrap, wrap=wrap, hinge=hinge, spine=(s0, s1),
                       back=back, front=front, barcode=barcode, spine_text=text_ok, spine_width=spine, pages=pages)


def pixels(inches: float, dpi: int) -> int:
    """Pixels that cover `inches` at no less than `dpi` (ceil minus float fuzz)."""
    return math.ceil(inches * dpi - 1e-6)
