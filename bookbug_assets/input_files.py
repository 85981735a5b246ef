"""Reading the files people hand us (stories, reviews): one error shape naming file, field, problem."""

import json
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class InputFileError(ValueError):
    """A file that cannot be used. `problems` is a list of (field, message); field "" = the whole file."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(f"{f}: {m}" if f else m for f, m in problems))


def field_path(loc: tuple) -> str:
    """pydantic's location tuple as people write it: pages[4].scene."""
    parts: list[str] = []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else ("." if parts else "") + str(item))
    return "".join(parts)


def read_mapping(data: bytes, source: str, error: type[InputFileError], max_bytes: int, what: str) -> dict:
    """Decode a JSON (by suffix) or YAML file into a mapping, or raise `error` saying where it broke."""
    if len(data) > max_bytes:
        raise error(source, [("", f"file is {len(data):,} bytes; a {what} must be under {max_bytes:,}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(source, [("", f"not UTF-8 text (byte {exc.start})")]) from None
    if "\x00" in text:
        raise error(source, [("", f"binary data, not a {what}")])
    try:
        raw = json.loads(text) if source.lower().endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise error(source, [("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise error(source, [("", f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}")]) from None
    if not isinstance(raw, dict):
        raise error(source, [("", f"top level must be a mapping, got {type(raw).__name__}")])
    return raw


def validate(model: type[M], raw: dict, source: str, error: type[InputFileError], root: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(source, [(field_path(e["loc"]) or root, e["msg"].removeprefix("Value error, "))
                             for e in exc.errors(include_url=False)]) from None
