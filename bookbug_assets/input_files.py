"""Reading the files people hand us (stories, reviews): one error shape naming file, field, problem."""

import json
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 20  # levels of values, the file's top mapping being 1; a story needs 5, a review 4
# Values in one file (every key, scalar, list and mapping): a 64-page story with 8 characters has about 1,500.
# The bound keeps the pure-Python YAML composer's time per file under a second (60,000 keys took 3.7 s).
MAX_VALUES = 10_000
_NESTED = f"nested too deeply (more than {MAX_DEPTH} levels of lists and mappings)"
_TOO_MANY = f"more than {MAX_VALUES:,} values; a story or review needs far fewer"
# What an error shows: a file with 60,000 unknown keys made a 2.4 MB message. The first problems say what to fix.
MAX_PROBLEMS_SHOWN = 50
MAX_FIELD_CHARS = 80     # a field path is the one piece of the file an error repeats: short, and escaped
MAX_PROBLEM_CHARS = 500
MAX_MESSAGE_CHARS = 8000
_YAML_MERGE = "tag:yaml.org,2002:merge"
_YAML_NULL = "tag:yaml.org,2002:null"


def shown(text: str) -> str:
    """Text from a file as an error message or a log may show it: characters that do not print, escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def problem_text(field: str, message: str) -> str:
    """One problem as an error shows it: the field clipped and escaped, the message clipped."""
    field = _clip(shown(field), MAX_FIELD_CHARS)
    return _clip(shown(f"{field}: {message}" if field else message), MAX_PROBLEM_CHARS)


class InputFileError(ValueError):
    """A file that cannot be used. `problems` is a list of (field, message); field "" = the whole file.

    The message shows the first MAX_PROBLEMS_SHOWN problems and at most MAX_MESSAGE_CHARS characters: it goes to
    reason files and logs, and nothing from the file but a clipped, escaped field name reaches it from here."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        parts = [problem_text(f, m) for f, m in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            parts.append(f"and {len(problems) - MAX_PROBLEMS_SHOWN:,} more problems")
        super().__init__(_clip(f"{_clip(shown(source), 255)}: " + "; ".join(parts), MAX_MESSAGE_CHARS))


def field_path(loc: tuple) -> str:
    """pydantic's location tuple as people write it: pages[4].scene. A key that does not print is escaped."""
    parts: list[str] = []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else ("." if parts else "") +
                     _clip(shown(str(item)), MAX_FIELD_CHARS))
    return "".join(parts)


class ParsedMapping(dict):
    """A file's top-level mapping, plus a hint for each key that looks like the tail of an unquoted value."""

    comma_hints: dict[tuple, str]


def read_mapping(data: bytes, source: str, error: type[InputFileError], max_bytes: int, what: str) -> ParsedMapping:
    """Decode a JSON (by suffix) or YAML file into a mapping, or raise `error` saying where it broke.

    Whatever the bytes, the only exception is `error`: duplicate keys, nesting deeper than MAX_DEPTH,
    numbers too long for Python's int and impossible dates are refused with the field where it is known.
    """
    if len(data) > max_bytes:
        raise error(source, [("", f"file is {len(data):,} bytes; a {what} must be under {max_bytes:,}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(source, [("", f"not UTF-8 text (byte {exc.start})")]) from None
    if "\x00" in text:
        raise error(source, [("", f"binary data, not a {what}")])
    try:
        raw, problems, hints = _load_json(text) if source.lower().endswith(".json") else _load_yaml(text)
    except json.JSONDecodeError as exc:
        raise error(source, [("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    except _TooMany as exc:
        raise error(source, [("", f"{_TOO_MANY} (at line {exc.mark.line + 1})")]) from None
    except _TooDeep as exc:
        raise error(source, [("", f"{_NESTED} at line {exc.mark.line + 1} column {exc.mark.column + 1}")]) from None
    except _BadValue as exc:
        raise error(source, [(field_path(exc.path), exc.message)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise error(source, [("", f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}")]) from None
    except RecursionError:   # the JSON decoder's own depth limit, reached before ours can be checked
        raise error(source, [("", _NESTED)]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a parser corner not handled above: still this file's
        raise error(source, [("", f"could not be read: {exc}")]) from None
    if problems:
        raise error(source, problems)
    if not isinstance(raw, dict):
        raise error(source, [("", f"top level must be a mapping, got {type(raw).__name__}")])
    parsed = ParsedMapping(raw)
    parsed.comma_hints = hints
    return parsed


class _TooDeep(Exception):
    def __init__(self, mark):
        self.mark = mark


class _TooMany(_TooDeep):
    """More than MAX_VALUES values: refused while composing, before the rest of the file is read."""


class _BadValue(Exception):
    """A scalar that parses but cannot be a Python value (a 5000-digit integer, 2023-02-30)."""

    def __init__(self, path: tuple, message: str):
        self.path, self.message = path, message


def _too_long(digits: str) -> str:
    return f"a number {len(digits.lstrip('+-').replace('_', ''))} digits long is too large"


# --- JSON ----------------------------------------------------------------------------------------------------------

class _DuplicateKeys(dict):
    duplicates: list[str]


class _LongInt:
    """Stands in for an integer Python refuses to convert, so the walk can say where it was."""

    def __init__(self, text: str):
        self.text = text


def _json_object(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    duplicates = []
    for key, value in pairs:
        if key in out:
            duplicates.append(key)
        out[key] = value
    if duplicates:
        out = _DuplicateKeys(out)
        out.duplicates = duplicates
    return out


def _json_int(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        return _LongInt(text)


def _load_json(text: str) -> tuple[object, list[tuple[str, str]], dict]:
    raw = json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)
    problems = []
    stack = [(raw, (), 1)]   # iterative: the depth is what is being checked
    values = 0
    while stack:
        value, path, depth = stack.pop()
        values += 1
        if depth > MAX_DEPTH:
            return raw, [("", _NESTED)], {}
        if values > MAX_VALUES:
            return raw, [("", _TOO_MANY)], {}
        if isinstance(value, _LongInt):
            problems.append((field_path(path), _too_long(value.text)))
        elif isinstance(value, dict):
            problems += [(field_path(path + (key,)), f"duplicate key {key!r}: a key may appear once in a mapping")
                         for key in dict.fromkeys(getattr(value, "duplicates", ()))]
            stack += [(v, path + (k,), depth + 1) for k, v in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(v, path + (i,), depth + 1) for i, v in reversed(list(enumerate(value)))]
    return raw, problems, {}


# --- YAML ----------------------------------------------------------------------------------------------------------

class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that bounds nesting while composing and names the field of a value that cannot be built."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth = 0
        self.values = 0
        self.paths: dict[int, tuple] = {}   # id(node) -> its field path, for errors while constructing

    def compose_node(self, parent, index):
        self.depth += 1
        self.values += 1
        try:
            if self.depth > MAX_DEPTH:   # the composer recurses: refuse before Python's own limit does
                raise _TooDeep(self.peek_event().start_mark)
            if self.values > MAX_VALUES:
                raise _TooMany(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:   # int() past its digit limit, date(2023, 2, 30)...
            mark = node.start_mark
            value = node.value if isinstance(node.value, str) else ""
            if node.tag.endswith(":int"):
                why = _too_long(value)
            elif node.tag.endswith(":timestamp"):
                why = f"{value!r} is not a real date or time ({exc})"
            else:
                why = f"{value[:40]!r} cannot be read as {node.tag.rsplit(':', 1)[-1]} ({exc})"
            raise _BadValue(self.paths.get(id(node), ()), f"line {mark.line + 1} column {mark.column + 1}: {why}") \
                from None


def _load_yaml(text: str) -> tuple[object, list[tuple[str, str]], dict]:
    loader = _YamlLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [], {}
        problems, hints = _check_yaml_tree(loader, root)
        return (None if problems else loader.construct_document(root)), problems, hints
    finally:
        loader.dispose()


def _check_yaml_tree(loader: _YamlLoader, root: yaml.Node) -> tuple[list[tuple[str, str]], dict[tuple, str]]:
    """Walk the composed nodes once: record each node's path, find duplicate keys and comma-split values."""
    problems: list[tuple[str, str]] = []
    hints: dict[tuple, str] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:   # an alias: walked once, where its anchor is (also ends a recursive alias)
            continue
        seen.add(id(node))
        loader.paths[id(node)] = path
        if isinstance(node, yaml.SequenceNode):
            stack += reversed([(child, path + (i,)) for i, child in enumerate(node.value)])
        elif isinstance(node, yaml.MappingNode):
            children = []
            first: dict = {}
            valued: tuple | None = None   # (key, text) of the last plain value in a flow mapping
            stray: list[tuple] = []       # keys with no value after it: "a, b" split by the comma
            for key_node, value_node in node.value:
                if key_node.tag == _YAML_MERGE:   # `<<: *base`: keys given here override it, by design
                    children.append((value_node, path))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):   # a complex key: construction refuses it
                    children.append((value_node, path))
                    continue
                loader.paths[id(key_node)] = path
                key = loader.construct_object(key_node)
                if key in first:
                    problems.append((field_path(path + (key,)), f"duplicate key {key!r} at line "
                                     f"{key_node.start_mark.line + 1} (first at line {first[key] + 1}): "
                                     "a key may appear once in a mapping"))
                else:
                    first[key] = key_node.start_mark.line
                children.append((value_node, path + (key,)))
                if not node.flow_style:
                    continue
                if isinstance(value_node, yaml.ScalarNode) and value_node.tag == _YAML_NULL and value_node.value == "":
                    stray.append(path + (key,))
                    continue
                _hint_commas(hints, valued, stray)
                stray = []
                valued = (key, value_node.value) if isinstance(value_node, yaml.ScalarNode) and \
                    not value_node.style else None
            _hint_commas(hints, valued, stray)
            stack += reversed(children)   # popped in file order, so problems are reported in file order
    return problems, hints


def _hint_commas(hints: dict[tuple, str], valued: tuple | None, stray: list[tuple]) -> None:
    if not stray:
        return
    if valued is None:
        fix = "put quotes around a value that contains a comma"
    else:
        joined = ", ".join([str(valued[1]), *(str(path[-1]) for path in stray)])
        fix = f'write {valued[0]}: "{joined}"'
    for path in stray:
        hints[path] = (f"unexpected key {path[-1]!r} with no value: did you quote a value with a comma? In a one-line "
                       f"{{...}} mapping an unquoted comma ends the value, so {fix}")


def validate(model: type[M], raw: dict, source: str, error: type[InputFileError], root: str) -> M:
    """`raw` from read_mapping; every validation error becomes (field, message), with read_mapping's hints."""
    hints = getattr(raw, "comma_hints", {})

    def message(e) -> str:
        if e["type"] == "extra_forbidden" and tuple(e["loc"]) in hints:   # the cause, not the symptom
            return hints[tuple(e["loc"])]
        return e["msg"].removeprefix("Value error, ")

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(source, [(field_path(e["loc"]) or root, message(e)) for e in exc.errors(include_url=False)]) \
            from None
