"""`--thresholds` on `bookbug demo | book | regenerate`: the quality gates' limits for one run, written inline
(`max_clipping=0.08,max_blur=...`) or as a YAML or JSON file with the `quality:` section's fields. Either way the
values go to every gated asset of the book (sprite_sheet, hero_page, book_pages and their checks) as run config,
over the story's and style's `quality:` settings (defs/book_runs.materialize_book).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from bookbug_assets.cli.errors import CliError
from bookbug_assets.input_files import InputFileError
from bookbug_assets.quality_section import QualitySection
from bookbug_assets.validation import THRESHOLDS_SUFFIXES, limit_problem, thresholds_file

EXAMPLE = "max_clipping=0.08"


def names_a_file(arg: str) -> bool:
    """An argument that names a file, not NAME=VALUE: something by that name exists, or it ends like a YAML or
    JSON file (so a typo in the name says "no such file" instead of "write NAME=VALUE")."""
    return arg.lower().endswith(THRESHOLDS_SUFFIXES) or Path(arg).exists()


def _inline(arg: str) -> dict:
    values: dict[str, str] = {}
    for part in (p.strip() for p in arg.split(",")):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise CliError(f"--thresholds {part!r}: write NAME=VALUE (e.g. {EXAMPLE}) or the name of a YAML or "
                           "JSON file of them")
        values[name.strip()] = value.strip()
    try:
        return QualitySection.model_validate(values).values()
    except ValidationError as exc:
        wrong = [f"{e['loc'][0]}={values.get(str(e['loc'][0]))!r}: {limit_problem(e)}" for e in exc.errors()]
        raise CliError(f"--thresholds: {'; '.join(wrong)}") from None


def parse_thresholds(given: list[str]) -> dict:
    """Every `--thresholds` argument (repeatable, each a file or NAME=VALUE[,...]) as the quality: section's
    fields, a later argument winning over an earlier one; each checked by QualitySection."""
    chosen: dict = {}
    for arg in given:
        if names_a_file(arg):
            try:
                chosen.update(thresholds_file(Path(arg)))
            except InputFileError as exc:
                raise CliError(f"--thresholds {exc}") from None
        else:
            chosen.update(_inline(arg))
    return chosen
