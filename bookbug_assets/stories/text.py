"""What may sit in text people hand us: a title, a name, page text, a scene or description that goes into a prompt.

Text from a story file reaches provider prompts, the PDF's text and metadata, file names in logs and the
Dagster UI. Characters that are invisible or steer a terminal or a layout engine have no place there:
a NUL ends a C string early, ESC rewrites a terminal, a bidirectional override makes "Pip" display as
something else, a zero-width space makes two identical-looking titles differ, tag characters carry
invisible instructions to a model. `plain_text_problem` is the one rule; models call it from a validator.
"""

from __future__ import annotations

import unicodedata

ZWNJ, ZWJ = "\u200c", "\u200d"
TAG_BASE = "\U0001f3f4"  # WAVING BLACK FLAG: the only base an emoji tag sequence (a subdivision flag) has
TAG_CANCEL = "\U000e007f"
MAX_TAG_RUN = 7  # the longest subdivision code ("gbsct" is 5) plus room; a longer run is a hidden message

_CONTROL_NAMES = {0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x09: "TAB", 0x0A: "LF, a line break", 0x0B: "VT",
                  0x0C: "FF", 0x0D: "CR", 0x1B: "ESC", 0x7F: "DEL", 0x85: "NEL", 0x9B: "CSI"}
_BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C}


def _is_tag(ch: str) -> bool:
    return 0xE0020 <= ord(ch) <= 0xE007F


def _is_variation_selector(ch: str) -> bool:
    return 0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF


def _visible_non_ascii(ch: str) -> bool:
    """A neighbour a joiner may sit next to: a letter, mark or symbol of a non-Latin script or an emoji."""
    return ord(ch) > 0x7F and unicodedata.category(ch)[0] not in "CZ"


def _describe(ch: str) -> str:
    code = f"U+{ord(ch):04X}"
    name = _CONTROL_NAMES.get(ord(ch)) or unicodedata.name(ch, "")
    return f"{code} ({name})" if name else code


def plain_text_problem(value: str, allow_newlines: bool) -> str | None:
    """Why `value` is not plain text, or None. The first offending character is named with its position.

    Refused: every control character (C0, DEL, C1 incl. NEL), line and paragraph separators U+2028/U+2029,
    lone surrogates, and every invisible format character (Unicode category Cf: bidirectional embeddings,
    overrides, isolates and marks, zero-width space, word joiner, BOM/ZWNBSP, soft hyphen...), with these
    exceptions:

    - newline and tab, only where `allow_newlines` (page text, scenes, descriptions): the layout wraps on
      them like on a space and YAML block scalars carry them. One-line fields (title, author, names) get
      neither. CR is refused everywhere: YAML already turns CRLF into LF, so a CR is a JSON "\\r" escape.
    - zero-width joiner and non-joiner (U+200D, U+200C) only between two visible non-ASCII characters.
      Emoji sequences (family, rainbow flag: the joiner follows an emoji or its variation selector) and
      Indic and Persian spelling need them there; between ASCII letters, at an edge or next to another
      invisible character they do nothing visible and only make equal-looking text differ.
    - tag characters (U+E0020-U+E007F) only as an emoji subdivision flag: right after U+1F3F4, at most
      MAX_TAG_RUN of them, ended by CANCEL TAG. Anywhere else they are an invisible message to a model.
    - variation selectors are ordinary marks, but never two in a row (a run of them hides bytes).
    """
    for i, ch in enumerate(value):
        code = ord(ch)
        where = f"at character {i + 1}"
        if ch == "\n" or ch == "\t":
            if allow_newlines:
                continue
            what = "a line break" if ch == "\n" else "a tab"
            return f"must be one line: {what} ({_describe(ch)}) {where}"
        category = unicodedata.category(ch)
        if category == "Cc":
            return f"control character {_describe(ch)} {where}; remove it"
        if category in ("Zl", "Zp"):
            hint = "; use an ordinary line break" if allow_newlines else ""
            return f"line or paragraph separator {_describe(ch)} {where}{hint}"
        if category == "Cs":
            return f"lone surrogate U+{code:04X} {where}: not a character (a broken \\u escape?)"
        if _is_variation_selector(ch) and i > 0 and _is_variation_selector(value[i - 1]):
            return f"a second variation selector in a row, {_describe(ch)} {where}; remove it"
        if category != "Cf":
            continue
        if ch in (ZWJ, ZWNJ):
            if 0 < i < len(value) - 1 and _visible_non_ascii(value[i - 1]) and _visible_non_ascii(value[i + 1]):
                continue
            return (f"invisible {_describe(ch)} {where}; it is allowed only between two non-ASCII characters, "
                    "as in an emoji sequence")
        if _is_tag(ch):
            start = i
            while start > 0 and _is_tag(value[start - 1]):
                start -= 1
            run_end = i
            while run_end < len(value) and _is_tag(value[run_end]) and value[run_end] != TAG_CANCEL:
                run_end += 1
            if (start > 0 and value[start - 1] == TAG_BASE and run_end < len(value) and value[run_end] == TAG_CANCEL
                    and run_end - start <= MAX_TAG_RUN):
                continue
            return f"invisible tag character {_describe(ch)} {where}; tags are allowed only in an emoji flag"
        if code in _BIDI:
            return f"bidirectional control {_describe(ch)} {where}; it can make the text display differently " \
                   "from what it says: remove it"
        return f"invisible formatting character {_describe(ch)} {where}; remove it"
    return None
