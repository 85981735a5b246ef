"""plain_text_problem: the one rule for what may sit in a title, a name, page text or a prompt."""

import pytest

from bookbug_assets.stories.text import plain_text_problem


@pytest.mark.parametrize("value", [
    "Pip and the Moon Lantern",
    "Émile et la lune",                       # accents, precomposed
    "Pip\u00a0the mouse",                      # no-break space is ordinary text
    "小さなねずみ",
    "\u05e4\u05d9\u05e4 \u05d4\u05e2\u05db\u05d1\u05e8",  # Hebrew: right-to-left by itself, no override needed
    "👩\u200d👧 a family",                      # ZWJ emoji sequence
    "🏳\ufe0f\u200d🌈 rainbow flag",             # ZWJ after a variation selector
    "می\u200cخواهم",                            # ZWNJ inside a Persian word
    "क्\u200dष",                                 # ZWJ in Devanagari
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scotland",  # emoji tag sequence (flag)
    "❤\ufe0f",                                  # one variation selector
])
def test_ordinary_text_passes(value):
    assert plain_text_problem(value, allow_newlines=False) is None
    assert plain_text_problem(value, allow_newlines=True) is None


@pytest.mark.parametrize("value, words", [
    ("Pip\x00", "U+0000"),
    ("Pip\x07", "U+0007"),
    ("\x1b[31mPip", "U+001B"),
    ("Pip\x7f", "U+007F"),
    ("Pip\x85", "U+0085"),
    ("Pip\x9b", "U+009B"),
    ("Pip\x0c", "U+000C"),
    ("Pip\x0b", "U+000B"),
    ("Pip\r\nmouse", "U+000D"),
    ("Pip\u2028mouse", "U+2028"),
    ("Pip\u2029mouse", "U+2029"),
    *((f"Pip{chr(c)}mouse", f"U+{c:04X}") for c in range(0x202A, 0x202F)),
    *((f"Pip{chr(c)}mouse", f"U+{c:04X}") for c in range(0x2066, 0x206A)),
    ("Pip\u200bmouse", "U+200B"),
    ("Pip\u200emouse", "U+200E"),
    ("Pip\u200fmouse", "U+200F"),
    ("\ufeffPip", "U+FEFF"),
    ("Pip\u00admouse", "U+00AD"),
    ("Pip\u2060mouse", "U+2060"),
    ("Pip\ud800mouse", "U+D800"),              # a lone surrogate (JSON "\ud800") cannot even be written as UTF-8
    ("Pi\u200dp", "U+200D"),                   # ZWJ between ASCII letters: invisible, no emoji or script needs it
    ("\u200dPip", "U+200D"),
    ("Pip\u200d", "U+200D"),
    ("é\u200d\u200dé", "U+200D"),              # a run of joiners: the second has an invisible neighbour
    ("a\u200cb", "U+200C"),
    ("Pip\U000e0069\U000e0067\U000e006e\U000e006f\U000e0072\U000e0065", "U+E0069"),  # tag "ASCII smuggling"
    ("🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074", "U+E0067"),            # tag run never ends
    ("a\ufe0f\ufe0e\ufe0f", "U+FE0E"),          # variation-selector smuggling
])
def test_invisible_and_control_characters_are_named(value, words):
    for allow_newlines in (False, True):
        problem = plain_text_problem(value, allow_newlines=allow_newlines)
        assert problem is not None and words in problem, (value, problem)


def test_newline_and_tab_only_where_lines_are_allowed():
    assert plain_text_problem("one\ntwo", allow_newlines=True) is None
    assert plain_text_problem("one\ttwo", allow_newlines=True) is None
    assert "U+000A" in plain_text_problem("one\ntwo", allow_newlines=False)
    assert "U+0009" in plain_text_problem("one\ttwo", allow_newlines=False)


def test_problem_names_position_and_kind():
    problem = plain_text_problem("ab\u202ecd", allow_newlines=True)
    assert "character 3" in problem and "bidirectional" in problem
    assert "control character" in plain_text_problem("ab\x1b", allow_newlines=True)
