import json
from pathlib import Path

import pytest
import yaml

from bookbug_assets.stories import StoryError, load_story_file, parse_story_bytes
from bookbug_assets.stories.schema import story_json_schema
from tests.conftest import EXAMPLE, REPO

STYLES = {"soft-meadow"}


def good() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_story_parses_with_12_pages_and_2_characters():
    story = load_story_file(EXAMPLE, STYLES)
    assert len(story.pages) == 12 and len(story.characters) == 2
    assert story.page_keys[0] == "001" and story.page_keys[-1] == "012"
    assert story.format.page_pixels == (2625, 2625)


def test_json_and_yaml_give_the_same_story():
    data = good()
    assert parse_story_bytes(json.dumps(data).encode(), "a.json", STYLES) == \
        parse_story_bytes(yaml.safe_dump(data).encode(), "a.yaml", STYLES)


def _error(data: bytes, name: str = "bad.json") -> StoryError:
    with pytest.raises(StoryError) as info:
        parse_story_bytes(data, name, STYLES)
    assert name in str(info.value)
    return info.value


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d.pop("title"), "title", "Field required"),
    (lambda d: d.update(pages=[]), "pages", "at least 1"),
    (lambda d: d.update(pages=d["pages"] * 42), "pages", "at most 64"),
    (lambda d: d.update(book_id="../../etc"), "book_id", "pattern"),
    (lambda d: d.update(book_id="Has Spaces"), "book_id", "pattern"),
    (lambda d: d["pages"][2].update(characters=["ghost"]), "story", "unknown character 'ghost'"),
    (lambda d: d["pages"][4].pop("scene"), "pages[4].scene", "Field required"),
    (lambda d: d.update(colour="red"), "colour", "Extra inputs"),
    (lambda d: d.update(style="noir"), "style", "unknown style 'noir'"),
    (lambda d: d.update(provider="nano"), "provider", "<family>:<model>"),
    (lambda d: d["format"].update(bleed_in=3) if "format" in d else d.update(format={"bleed_in": 3}),
     "format.bleed_in", "less than or equal"),
    # Valid fields, but the book could not be printed: refused before any image is paid for.
    (lambda d: (d.update(format={"trim_width_in": 4, "trim_height_in": 4}),
                d["pages"][2].update(text="Pip walked on and on through the long grass. " * 12)),
     "pages[2].text", "does not fit the safe area"),
    (lambda d: d.update(format={"trim_width_in": 4, "trim_height_in": 4},
                        title="The Very Long and Winding Tale of " + "a Little Mouse and a Lantern " * 4),
     "title", "does not fit the safe area"),
])
def test_errors_name_the_file_and_the_field(mutate, field, words):
    data = good()
    mutate(data)
    err = _error(json.dumps(data).encode())
    fields = [f for f, _ in err.problems]
    assert field in fields, err.problems
    assert any(words in msg for _, msg in err.problems), err.problems


def test_broken_json_names_line_and_column():
    err = _error(b'{"book_id": "x",\n "title": }')
    assert "line 2" in str(err)


def test_broken_yaml():
    err = _error(b"book_id: [unclosed\ntitle: x", "bad.yaml")
    assert "invalid YAML" in str(err)


def test_binary_junk_and_huge_files_are_refused(tmp_path: Path):
    assert "not UTF-8" in str(_error(bytes(range(256)) * 4)) or "binary" in str(_error(bytes(range(256)) * 4))
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    with pytest.raises(StoryError, match="big.json: .*must be under"):
        load_story_file(big, STYLES)


def test_exported_schema_is_current():
    assert (REPO / "schemas" / "story.schema.json").read_text() == story_json_schema(), \
        "run `make schema` to refresh schemas/story.schema.json"
