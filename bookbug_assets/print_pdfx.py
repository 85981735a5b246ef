"""PDF/X-1a read back from the file: the rules a platform's upload check applies, as far as pypdf can see them.

From ISO 15930-1:2001 (PDF/X-1a:2001) as summarised by Adobe's and Ghostscript's PDF/X notes
(https://ghostscript.readthedocs.io/en/latest/VectorDevices.html#creating-a-pdf-x-document, lib/PDFX_def.ps in
https://github.com/ArtifexSoftware/ghostpdl): PDF 1.3 at most; Info with GTS_PDFXVersion, Title, CreationDate,
ModDate and Trapped (True or False); one OutputIntent /S /GTS_PDFX with an OutputConditionIdentifier and, here
always (IngramSpark reads the profile), a DestOutputProfile that is an ICC v2 CMYK printer profile; no
encryption; a TrimBox (or ArtBox) on every page; colour only DeviceCMYK, DeviceGray, Separation or DeviceN (no RGB
images, no RGB fills or strokes, no ICC or calibrated colour spaces); no transparency (groups, soft masks,
constant alpha below 1, blend modes other than Normal). Not checked here: font embedding and resolution
(print_preflight via preflight.py's walker), ink (print_preflight and print_ghostscript).
"""

from __future__ import annotations

from pypdf import PdfReader
from pypdf.generic import ContentStream

from bookbug_assets.print_colour import output_profile_problem

ALLOWED_SPACES = {"/DeviceCMYK", "/DeviceGray", "/Separation", "/DeviceN", "/Pattern"}
RGB_OPERATORS = {b"rg": "fill", b"RG": "stroke"}
NORMAL_BLEND = {"/Normal", "/Compatible"}
MAX_FORM_DEPTH = 8


def _space_name(space) -> str:
    space = space.get_object() if hasattr(space, "get_object") else space
    if isinstance(space, list) and space:
        first = str(space[0])
        if first == "/Indexed" and len(space) > 1:
            return _space_name(space[1])   # an indexed space is as good as its base
        return first
    return str(space)


def _info_problems(reader: PdfReader, standard: str) -> list[str]:
    info = reader.metadata or {}
    problems = []
    version = str(info.get("/GTS_PDFXVersion") or "")
    if version != standard:
        problems.append(f"GTS_PDFXVersion is {version or 'missing'}, the platform wants {standard}")
    if str(info.get("/Trapped", "")) not in ("/True", "/False"):
        problems.append("the document info has no Trapped key set to True or False (PDF/X requires one)")
    for key in ("/Title", "/CreationDate", "/ModDate"):
        if not info.get(key):
            problems.append(f"the document info has no {key[1:]} (PDF/X requires it)")
    header = reader.pdf_header.removeprefix("%PDF-")
    if standard.startswith("PDF/X-1a:2001") and header > "1.3":
        problems.append(f"the file is PDF {header}; {standard} is PDF 1.3")
    if reader.is_encrypted:
        problems.append("the file is encrypted; PDF/X forbids encryption")
    return problems


def _intent_problems(reader: PdfReader) -> list[str]:
    root = reader.trailer["/Root"]
    intents = [i.get_object() for i in root.get("/OutputIntents", [])]
    pdfx = [i for i in intents if i.get("/S") == "/GTS_PDFX"]
    if not pdfx:
        return ["no PDF/X output intent (/OutputIntents with /S /GTS_PDFX)"]
    if len(pdfx) > 1:
        return [f"{len(pdfx)} PDF/X output intents; PDF/X allows one"]
    intent = pdfx[0]
    problems = []
    if not intent.get("/OutputConditionIdentifier"):
        problems.append("the output intent has no OutputConditionIdentifier")
    if "/DestOutputProfile" not in intent:
        return [*problems, "the output intent has no DestOutputProfile (the ICC profile of the printing condition)"]
    icc = intent["/DestOutputProfile"].get_object()
    if icc.get("/N") != 4:
        problems.append(f"the output profile stream says /N {icc.get('/N')}, a CMYK profile has 4 components")
    if problem := output_profile_problem(icc.get_data()):
        problems.append(f"the output profile: {problem}")
    return problems


def _resource_problems(resources, where: str, depth: int, seen: set) -> list[str]:
    """Colour spaces, graphics states, images and forms in `resources` (forms recursively)."""
    resources = resources.get_object() if resources is not None else {}
    problems = []
    for name, space in (resources.get("/ColorSpace") or {}).items():
        kind = _space_name(space)
        if kind not in ALLOWED_SPACES:
            problems.append(f"{where}: colour space {name} is {kind}; PDF/X-1a takes CMYK, grey or spot colour")
    for name, gs in (resources.get("/ExtGState") or {}).items():
        gs = gs.get_object()
        alpha = min(float(gs.get("/ca", 1)), float(gs.get("/CA", 1)))
        smask = gs.get("/SMask")
        blend = gs.get("/BM")
        if alpha < 1 or (smask is not None and smask != "/None") or (blend is not None and str(blend) not in
                                                                      NORMAL_BLEND):
            problems.append(f"{where}: live transparency ({name}); PDF/X-1a wants it flattened")
    for ref in (resources.get("/XObject") or {}).values():
        xobj = ref.get_object()
        key = id(xobj) if getattr(ref, "idnum", None) is None else ref.idnum
        if key in seen:
            continue
        seen.add(key)
        if xobj.get("/Subtype") == "/Image":
            if "/SMask" in xobj or "/SMaskInData" in xobj and xobj["/SMaskInData"]:
                problems.append(f"{where}: an image has a soft mask (transparency)")
            if not xobj.get("/ImageMask"):
                kind = _space_name(xobj.get("/ColorSpace"))
                if kind not in ALLOWED_SPACES:
                    problems.append(f"{where}: image in {kind}; PDF/X-1a takes CMYK or grey")
        elif xobj.get("/Subtype") == "/Form":
            if (xobj.get("/Group") or {}).get("/S") == "/Transparency":
                problems.append(f"{where}: a form carries a transparency group")
            if depth < MAX_FORM_DEPTH:
                problems += _operator_problems(xobj, xobj.get("/Resources"), where, depth + 1, seen)
    return problems


def _operator_problems(stream, resources, where: str, depth: int, seen: set) -> list[str]:
    problems = _resource_problems(resources, where, depth, seen)
    if stream is None:
        return problems
    content = stream if isinstance(stream, ContentStream) else ContentStream(stream, None)
    used = sorted({RGB_OPERATORS[op] for _, op in content.operations if op in RGB_OPERATORS})
    if used:
        problems.append(f"{where}: RGB colour ({' and '.join(used)} set with rg/RG); PDF/X-1a takes CMYK or grey")
    return problems


def page_problems(page, label: str) -> list[str]:
    problems = []
    if "/TrimBox" not in page and "/ArtBox" not in page:
        problems.append(f"{label}: no TrimBox (PDF/X wants one on every page)")
    if (page.get("/Group") or {}).get("/S") == "/Transparency":
        problems.append(f"{label}: the page is a transparency group; PDF/X-1a wants transparency flattened")
    resources = page.get("/Resources")
    problems += _operator_problems(page.get_contents(), resources, label, 0, set())
    return problems


def pdfx_problems(reader: PdfReader, standard: str, labels: list[str]) -> list[str]:
    """Everything above for the whole file; each problem names the page (by `labels`) or the document part."""
    problems = _info_problems(reader, standard) + _intent_problems(reader)
    for page, label in zip(reader.pages, labels):
        problems += page_problems(page, label)
    return problems
