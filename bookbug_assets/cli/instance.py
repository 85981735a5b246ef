"""The Dagster instance in $DAGSTER_HOME, which every `bookbug` command that runs or moves a book uses, or a
one-line error naming the variable when that folder cannot hold it."""

from __future__ import annotations

import os

import dagster as dg

from bookbug_assets.cli.errors import CliError

SET_IT = "mkdir -p .dagster_home && export DAGSTER_HOME=$PWD/.dagster_home"


def open_instance() -> dg.DagsterInstance:
    """dg.DagsterInstance.get(); an unset or missing DAGSTER_HOME is described by errors.exception_line, a folder
    the instance cannot write (its sqlite storage is created on first use) here."""
    home = os.environ.get("DAGSTER_HOME", "")
    try:
        return dg.DagsterInstance.get()
    except OSError as exc:
        where = f"{exc.strerror or type(exc).__name__}: {exc.filename}" if exc.filename else str(exc)
        raise CliError(f"DAGSTER_HOME={home}: Dagster cannot keep its runs there ({where}); set DAGSTER_HOME to a "
                       f"folder you can write ({SET_IT})") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):  # a sqlite file it cannot open or create
            raise CliError(f"DAGSTER_HOME={home}: Dagster cannot open its storage there ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}); check DAGSTER_HOME and its dagster.yaml") from exc
        raise
