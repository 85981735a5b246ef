"""XMP provenance in the PDFs that may carry it: is the art AI-made, and by what.

Readers of provenance look in the document's XMP packet (a /Metadata stream on the catalog, ISO 16684-1), not in a
private Info key. The IPTC "digital source type" vocabulary says what made the art in one agreed word
(https://cv.iptc.org/newscodes/digitalsourcetype/, used by C2PA and by the platforms' AI-content labels):
`compositeWithTrainedAlgorithmicMedia` for pages of model-drawn art with the book's own text set over it,
`compositeSynthetic` for preview proofs (art drawn by a program, not a trained model, with the text). Each image's
model and seed go beside it in a `bookbug:` namespace.

Which files carry it is the platform's call (print_platforms.PlatformRules.xmp_allowed): KDP asks for files
without metadata, and PDF/X-1a:2001 is PDF 1.3, older than metadata streams. The sidecar JSON keeps the record for
every platform.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from reportlab.pdfbase.pdfdoc import PDFDictionary, PDFName, PDFStream
from reportlab.pdfgen.canvas import Canvas

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
BOOKBUG_NS = "urn:bookbug:provenance:1#"


def digital_source_type(provenance: dict) -> str:
    """The IPTC term for a book page: art over which the book's text is set, so always a composite."""
    trained = any(image["ai_generated"] for image in provenance["images"].values())
    return IPTC_SOURCE_TYPES + ("compositeWithTrainedAlgorithmicMedia" if trained else "compositeSynthetic")


def _image_line(name: str, image: dict) -> str:
    made = "preview render" if image["preview_render"] else "AI-generated"
    model = f"{image['provider']}:{image['model']}" + (f"@{image['model_version']}" if image["model_version"] else "")
    lora = f", LoRA {image['lora']}" if image.get("lora") else ""
    return f"{name}: {made} by {model}, seed {image['seed']}{lora}, sha256 {image['image_sha256']}"


def provenance_xmp(title: str, author: str, provenance: dict) -> bytes:
    """The XMP packet: Dublin Core title and creator, the creator tool, the IPTC source type and one line per image.

    Deterministic (no dates): the same book gives the same bytes, so an unchanged PDF stays byte-identical."""
    q = {'"': "&quot;"}
    images = "".join(f"<rdf:li>{escape(_image_line(name, image), q)}</rdf:li>"
                     for name, image in sorted(provenance["images"].items()))
    body = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:bookbug="{BOOKBUG_NS}">'
        f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{escape(title, q)}</rdf:li></rdf:Alt></dc:title>'
        f"<dc:creator><rdf:Seq><rdf:li>{escape(author, q)}</rdf:li></rdf:Seq></dc:creator>"
        "<xmp:CreatorTool>bookbug_assets</xmp:CreatorTool>"
        f"<Iptc4xmpExt:DigitalSourceType>{digital_source_type(provenance)}</Iptc4xmpExt:DigitalSourceType>"
        f"<bookbug:images><rdf:Bag>{images}</rdf:Bag></bookbug:images>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    # The packet wrapper lets tools find and rewrite XMP in place; the stream stays uncompressed for the same reason.
    return f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>{body}<?xpacket end="r"?>'.encode()


def add_xmp(c: Canvas, xmp: bytes) -> None:
    """The packet as the catalog's /Metadata stream (reportlab writes only the catalog keys it knows, so the key is
    added to this catalog's list first)."""
    catalog = c._doc.Catalog
    if "Metadata" not in catalog.__NoDefault__:
        catalog.__NoDefault__ = [*catalog.__NoDefault__, "Metadata"]
    stream = PDFStream(PDFDictionary({"Type": PDFName("Metadata"), "Subtype": PDFName("XML")}), xmp, filters=[])
    c.setCatalogEntry("Metadata", c._doc.Reference(stream))


def read_xmp(reader) -> str | None:
    """The XMP packet of a pypdf reader's document, or None."""
    root = reader.trailer["/Root"]
    if "/Metadata" not in root:
        return None
    return root["/Metadata"].get_object().get_data().decode("utf-8", "replace")
