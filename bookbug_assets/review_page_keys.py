"""Page keys of a review file (`pages: {3: {decision: ...}}`): page numbers as a reviewer writes them, each once.

YAML 1.1 (PyYAML) reads `yes:`/`on:` as true (page 1 to pydantic's lax int), `010:` as 8, `0x3:` as 3 and `3.0:`
as a float (page 3), so the key as written decides, not the value YAML builds from it
(https://yaml.org/type/bool.html, https://yaml.org/type/int.html).
"""

from __future__ import annotations

import re

import yaml

PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,3}")  # as people write page numbers: no sign, no leading zero, no 0x
_YAML_INT = "tag:yaml.org,2002:int"


def is_page_number_key(key: object) -> bool:
    """An int (not a bool), or a string of a plain decimal page number (JSON and quoted YAML keys)."""
    if isinstance(key, bool):
        return False
    return type(key) is int or (isinstance(key, str) and PAGE_NUMBER.fullmatch(key) is not None)


def yaml_page_key_problems(text: str) -> list[tuple[str, str]]:
    """(field, problem) for each key under `pages:` that is not a plain decimal page number, or repeats one; the
    field is the key as written. `text` must have passed input_files.read_mapping (decoded, depth-bounded)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)  # bounded: read_mapping refused deep or huge files first
    if not isinstance(root, yaml.MappingNode):
        return []
    pages = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "pages"), None)
    if not isinstance(pages, yaml.MappingNode):
        return []
    problems = []
    lines: dict[int, int] = {}
    for key, _ in pages.value:
        written = key.value if isinstance(key, yaml.ScalarNode) else ""
        field = f"pages.{written}"
        if isinstance(key, yaml.ScalarNode) and PAGE_NUMBER.fullmatch(written) and \
                (key.tag == _YAML_INT or key.style in ("'", '"')):
            number, line = int(written), key.start_mark.line + 1
            if number in lines:
                problems.append((field, f"page {number} is listed twice (lines {lines[number]} and {line})"))
            lines.setdefault(number, line)
            continue
        kind = key.tag.rsplit(":", 1)[-1] if isinstance(key, yaml.ScalarNode) else "not a number"
        if kind == "bool":
            why = f"{written} is a YAML boolean here, not a page number; write the page's number, e.g. 3:"
        elif kind == "float":
            why = f"{written} is not a whole page number; write e.g. 3:"
        elif kind == "int":
            why = f"write page numbers in plain decimal, e.g. 3: (YAML reads {written} as {int(yaml.safe_load(written))})"
        else:
            why = "is not a page number; write pages as 1:, 2:, ..."
        problems.append((field, why))
    return problems
