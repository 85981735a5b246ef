"""`bookbug`: every failure is one line on stderr and a non-zero exit code (a traceback only under --debug), and
`bookbug book` builds the file it was given, or refuses it saying why.

Each test calls `bookbug_assets.cli.main` in this process, against a throwaway data root and instance.
"""

import os
import shutil

import pytest
import yaml

from bookbug_assets.cli import main
from tests.conftest import EXAMPLE


@pytest.fixture
def env(workspace, monkeypatch, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for name, value in {"DAGSTER_HOME": home, "BOOKBUG_DATA_ROOT": workspace["outputs"],
                        "BOOKBUG_STORIES_DIR": workspace["stories"], "BOOKBUG_STYLES_DIR": workspace["styles"]}.items():
        monkeypatch.setenv(name, str(value))
    for name in ("REPLICATE_API_TOKEN", "FAL_KEY", "BOOKBUG_PROVIDER", "BOOKBUG_S3_BUCKET", "BOOKBUG_S3_STORIES_PREFIX",
                 "BOOKBUG_DEBUG"):
        monkeypatch.delenv(name, raising=False)  # the offline preview, whatever the caller's shell has
    return workspace


def story_text(book_id: str, pages: int = 2, **fields) -> str:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(book_id=book_id, pages=data["pages"][:pages], **fields)
    return yaml.safe_dump(data, sort_keys=False)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bookbug: error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_story_nested_1000_deep_is_one_line(env, capsys, tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a:\n" + "".join(" " * (i + 1) + "b:\n" for i in range(1000)))
    code, _, err = run(capsys, "book", str(deep))
    assert code == 1
    assert "deep.yaml" in one_error_line(err) and "nested too deeply" in err


def test_a_data_root_that_cannot_be_written_is_one_line_naming_the_variable(env, capsys, monkeypatch):
    monkeypatch.setenv("BOOKBUG_DATA_ROOT", "/proc")
    code, _, err = run(capsys, "demo")
    assert code == 1
    assert "BOOKBUG_DATA_ROOT=/proc" in one_error_line(err)


def test_an_s3_bucket_without_credentials_is_one_line_naming_the_variable(env, capsys, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup: fails at once
    monkeypatch.setenv("BOOKBUG_S3_BUCKET", "books")
    monkeypatch.setenv("BOOKBUG_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    code, _, err = run(capsys, "demo")
    line = one_error_line(err)
    assert code == 1
    assert "BOOKBUG_S3_BUCKET=books" in line and "credentials" in line


def test_dagster_home_unset_is_one_line(env, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME")
    (env["stories"] / "short.yaml").write_text(story_text("short"))
    code, _, err = run(capsys, "book", str(env["stories"] / "short.yaml"))
    assert code == 1 and "DAGSTER_HOME" in one_error_line(err)


def test_a_failed_quality_gate_is_one_line_naming_the_image_and_the_run(env, capsys):
    (env["stories"] / "gated.yaml").write_text(story_text("gated"))
    code, out, err = run(capsys, "book", str(env["stories"] / "gated.yaml"), "--thresholds", "min_blur=1000000")
    line = one_error_line(err)
    assert code == 1
    assert "sprite_sheet failed its quality gate" in line and "blurred" in line and "see run " in line, line
    assert "Stack Trace" not in out  # Dagster's log goes to stdout, without the traceback


def test_a_failure_raised_in_a_run_is_one_line_with_its_words(env, capsys):
    (env["stories"] / "needs-key.yaml").write_text(story_text("needs-key", provider="replicate:black-forest-labs/flux-dev"))
    code, _, err = run(capsys, "book", str(env["stories"] / "needs-key.yaml"))
    line = one_error_line(err)
    assert code == 1 and "REPLICATE_API_TOKEN" in line, line


def test_debug_shows_the_traceback(env, capsys, monkeypatch):
    monkeypatch.setenv("BOOKBUG_DATA_ROOT", "/proc")
    with pytest.raises(Exception, match="BOOKBUG_DATA_ROOT=/proc"):
        main(["demo", "--debug"])
    monkeypatch.setenv("BOOKBUG_DEBUG", "1")
    with pytest.raises(Exception, match="BOOKBUG_DATA_ROOT=/proc"):
        main(["demo"])


def test_unknown_thresholds_are_one_line(env, capsys):
    code, _, err = run(capsys, "demo", "--thresholds", "max_blur=3")
    assert code == 1 and "max_blur='3': not a quality limit" in one_error_line(err)


# --- which file a book is built from -------------------------------------------------------------------------

def test_book_builds_the_given_file_and_refuses_another_file_claiming_its_book_id(env, capsys, tmp_path):
    owner = env["stories"] / "owner.yaml"
    owner.write_text(story_text("owned"))
    code, out, err = run(capsys, "book", str(owner))
    assert code == 0 and not err, err
    pdf = env["outputs"] / "books" / "owned" / "owned.pdf"
    assert f"[bookbug] PDF: {pdf.resolve()}" in out and pdf.is_file()
    built = pdf.read_bytes()

    hijack = story_text("owned", title="Hijacked")
    elsewhere = tmp_path / "aaa.yaml"
    elsewhere.write_text(hijack)
    (env["stories"] / "aaa.yaml").write_text(hijack)  # in the folder too, newer than the owner
    for path in (elsewhere, env["stories"] / "aaa.yaml"):
        code, _, err = run(capsys, "book", str(path))
        line = one_error_line(err)
        assert code == 1 and "book_id: 'owned' belongs to owner.yaml" in line, line
    assert pdf.read_bytes() == built  # nothing ran
    code, _, err = run(capsys, "book", str(owner))  # the owner still builds (all cache hits)
    assert code == 0, err


def test_book_builds_a_story_file_outside_the_watched_folder(env, capsys, tmp_path):
    outside = tmp_path / "somewhere" / "book.yaml"
    outside.parent.mkdir()
    outside.write_text(story_text("outside-folder"))
    code, out, err = run(capsys, "book", str(outside))
    assert code == 0, err
    assert (env["outputs"] / "books" / "outside-folder" / "outside-folder.pdf").is_file()


# --- bookbug validate --------------------------------------------------------------------------------------------

def test_validate_prints_one_line_per_problem_and_exits_1(env, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load(story_text("bad-book"))
    data.update(style="noir", provider="nope:model", seed=-1)
    data["pages"][1].pop("scene")
    bad.write_text(yaml.safe_dump(data))
    code, out, err = run(capsys, "validate", str(bad))
    lines = out.splitlines()
    assert code == 1 and not err
    assert all(line.startswith(f"{bad}: ") for line in lines), lines
    fields = {line.split(": ")[1] for line in lines}
    assert {"provider", "seed", "pages[1].scene"} <= fields, lines


def test_validate_finds_what_the_sensors_would_refuse(env, capsys, tmp_path):
    (env["stories"] / "first.yaml").write_text(story_text("taken"))
    later = tmp_path / "later.yaml"
    later.write_text(story_text("taken", title="Another"))
    unknown = tmp_path / "unknown-style.yaml"
    unknown.write_text(story_text("unknown-style", style="chibi"))
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it would block: it must be refused unread
    code, out, _ = run(capsys, "validate", str(later), str(unknown), str(fifo), str(env["stories"] / "first.yaml"))
    assert code == 1
    assert f"{later}: book_id: 'taken' belongs to first.yaml" in out
    assert f"{unknown}: style: unknown style 'chibi'" in out
    assert f"{fifo}: not read: it is a FIFO" in out
    assert f"ok: {env['stories'] / 'first.yaml'}" in out


def test_validate_a_style_folder_lists_every_problem(env, capsys):
    style = env["styles"] / "My Style"
    shutil.copytree(env["styles"] / "soft-meadow", style)
    (style / "style.yaml").write_text("name: my-style\ntrainer: sometimes\ntraining_steps: 1\n")
    captions = sorted((style / "images").glob("*.txt"))
    for caption in captions[:2]:
        caption.unlink()
    code, out, _ = run(capsys, "validate", str(style))
    assert code == 1
    assert "is not a style name" in out
    assert f"{style / 'style.yaml'}: trainer: " in out and f"{style / 'style.yaml'}: training_steps: " in out
    assert all(f"{c}: missing caption" in out for c in captions[:2]), out

    code, out, _ = run(capsys, "validate", str(env["styles"] / "soft-meadow"))
    assert code == 0 and "ok: " in out


# --- --thresholds FILE or NAME=VALUE -------------------------------------------------------------------------

def _gate_configs(home) -> dict[str, dict]:
    """Each op's `thresholds` run config over the book's runs in the instance at `home`."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    found = {}
    for record in instance.get_run_records():
        for op, config in (record.dagster_run.run_config.get("ops") or {}).items():
            found[op] = (config or {}).get("config", {}).get("thresholds")
    return found


def test_thresholds_from_a_file_and_inline_reach_every_gated_asset(env, capsys, tmp_path):
    (env["stories"] / "tuned.yaml").write_text(story_text("tuned"))
    limits = tmp_path / "limits.yaml"
    limits.write_text("# calibrated for this provider\nmax_clipping: 0.5\nmin_blur: 2\n")
    code, _, err = run(capsys, "book", str(env["stories"] / "tuned.yaml"), "--thresholds", str(limits),
                       "--thresholds", "min_blur=3")  # a later argument wins
    assert code == 0, err
    configs = _gate_configs(os.environ["DAGSTER_HOME"])
    gated = {"sprite_sheet", "hero_page", "book_pages", "sprite_sheet_sprite_sheet_quality",
             "hero_page_hero_page_quality"}
    assert set(configs) == gated, configs
    assert all(c == {"max_clipping": 0.5, "min_blur": 3.0} for c in configs.values()), configs


def test_a_thresholds_file_that_fails_the_gate_fails_the_book(env, capsys, tmp_path):
    (env["stories"] / "gated.yaml").write_text(story_text("gated"))
    limits = tmp_path / "limits.json"
    limits.write_text('{"min_blur": 1000000}')
    code, _, err = run(capsys, "book", str(env["stories"] / "gated.yaml"), "--thresholds", str(limits))
    assert code == 1 and "sprite_sheet failed its quality gate" in one_error_line(err)


@pytest.mark.parametrize(("text", "words"), [
    ("max_blur: 3\n", ["limits.yaml: max_blur: not a quality limit (limits: min_blur,"]),
    ("min_blur: -1\nmax_clipping: lots\n", ["limits.yaml: min_blur: Input should be greater than or equal to 0",
                                            "max_clipping: Input should be a valid number"]),
    ("max_clipping: true\n", ["limits.yaml: max_clipping: a number, not true/false"]),
    ("max_clipping: [0.1\n", ["limits.yaml: invalid YAML at line 2"]),
    ("- 0.1\n", ["limits.yaml: top level must be a mapping"]),
])
def test_a_bad_thresholds_file_is_one_line_naming_the_file_and_field(env, capsys, tmp_path, text, words):
    limits = tmp_path / "limits.yaml"
    limits.write_text(text)
    code, _, err = run(capsys, "demo", "--thresholds", str(limits))
    line = one_error_line(err)
    assert code == 1 and line.startswith(f"bookbug: error: --thresholds {limits}: "), line
    assert all(w in line for w in words), line
    assert not (env["outputs"] / "books").exists()  # refused before anything ran


def test_a_missing_or_unreadable_thresholds_file_is_one_line(env, capsys, tmp_path):
    missing = tmp_path / "nowhere.yaml"
    code, _, err = run(capsys, "demo", "--thresholds", str(missing))
    assert code == 1 and f"--thresholds {missing}: cannot be read: No such file" in one_error_line(err)
    fifo = tmp_path / "limits"
    os.mkfifo(fifo)  # an existing name without a suffix is a file too; opening a FIFO would block
    code, _, err = run(capsys, "demo", "--thresholds", str(fifo))
    assert code == 1 and f"--thresholds {fifo}: not read: it is a FIFO" in one_error_line(err)


def test_thresholds_files_may_hold_a_quality_section_and_inline_values_are_checked_too(tmp_path):
    from bookbug_assets.cli.errors import CliError
    from bookbug_assets.cli.thresholds import parse_thresholds

    section = tmp_path / "style-like.yml"
    section.write_text("quality:\n  max_style_distance: 0.45\n  gate_character_on_previews: true\n")
    assert parse_thresholds([str(section)]) == {"max_style_distance": 0.45, "gate_character_on_previews": True}
    assert parse_thresholds(["max_clipping=0.08, aspect_tol=0.1"]) == {"max_clipping": 0.08, "aspect_tol": 0.1}
    with pytest.raises(CliError, match="write NAME=VALUE .* or the name of a YAML or JSON file"):
        parse_thresholds(["max_clipping"])
    with pytest.raises(CliError, match="max_clipping='2': Input should be less than or equal to 1"):
        parse_thresholds(["max_clipping=2"])


# --- common mistakes are one line, never a traceback --------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "words"), [
    ("missing.yaml", None, "missing.yaml: cannot be read: No such file or directory"),
    ("story.txt", "title: x\n", "story.txt: unsupported extension '.txt'; use .json, .yaml or .yml"),
    ("broken.yaml", "title: [x\n", "broken.yaml: invalid YAML at line 2"),
    ("broken.json", "{\"title\": ", "broken.json: invalid JSON at line 1"),
    ("a-folder", "folder", "a-folder: not read: it is a folder, not a story file"),
])
def test_a_story_file_that_cannot_be_used_is_one_line(env, capsys, tmp_path, name, content, words):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    code, _, err = run(capsys, "book", str(path))
    assert code == 1 and words in one_error_line(err)


def test_a_dagster_home_that_cannot_hold_the_instance_is_one_line_naming_it(env, capsys, monkeypatch, tmp_path):
    (env["stories"] / "short.yaml").write_text(story_text("short"))
    home = tmp_path / "blocked_home"
    home.mkdir()
    (home / "history").write_text("")  # where the instance keeps its runs: a file, so the folder cannot be made
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    code, _, err = run(capsys, "book", str(env["stories"] / "short.yaml"))
    line = one_error_line(err)
    assert code == 1 and f"DAGSTER_HOME={home}: Dagster cannot keep its runs there" in line, line
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no-such-home"))
    code, _, err = run(capsys, "book", str(env["stories"] / "short.yaml"))
    assert code == 1 and "no-such-home" in one_error_line(err) and "mkdir -p" in err


def test_regenerate_an_unknown_book_is_one_line(env, capsys):
    code, _, err = run(capsys, "regenerate", "nobody")
    assert code == 1 and "has book_id 'nobody'" in one_error_line(err)


def test_a_book_with_a_print_target_says_where_its_print_files_are(env, capsys):
    path = env["stories"] / "printed.yaml"
    path.write_text(story_text("printed", pages=2, print={"platform": "kdp", "binding": "paperback",
                                                          "paper": "premium-color"}))
    code, out, err = run(capsys, "book", str(path))
    assert code == 0, err
    printed = [line for line in out.splitlines() if line.startswith("[bookbug] book_")]
    assert [line.split(":")[0] for line in printed] == ["[bookbug] book_interior", "[bookbug] book_cover"]
    assert all("printed/print/kdp-" in line and line.endswith(")") for line in printed), printed
