"""The two layers hold: only the Dagster layer imports dagster, the package has no import cycle, and the
project's definitions load with every asset, check, sensor and job the README names."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bookbug_assets"
DAGSTER_ALLOWED = ("bookbug_assets.defs", "bookbug_assets.definitions", "bookbug_assets.cli")
DAGSTER_MODULES = ("dagster", "dagster_aws", "dagster_postgres", "dagster_webserver")


def _module_name(path: Path) -> str:
    root = next(p for p in path.parents if p.name == "bookbug_assets").parent
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module this file imports, at top level or inside a function (lazy imports count)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    return {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_only_the_dagster_layer_imports_dagster():
    offenders = {}
    for name, path in MODULES.items():
        if name.startswith(DAGSTER_ALLOWED):
            continue
        bad = sorted(m for m in _imports(path) if m.split(".")[0] in DAGSTER_MODULES)
        if bad:
            offenders[name] = bad
    assert not offenders, f"the plain core imports Dagster: {offenders}"


def test_no_import_cycles_between_modules_of_the_package():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ importing its own submodules is how a package re-exports; a submodule importing
    # its package's __init__ back is the cycle that matters.
    real = [c for c in cycles if not any(a == b.rsplit(".", 1)[0] for a, b in zip(c, c[1:]))]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)


def test_the_import_walk_sees_a_cycle_and_a_dagster_import(tmp_path):
    """The two tests above can fail: the same walk over a planted package finds what it must."""
    pkg = tmp_path / "bookbug_assets"
    pkg.mkdir()
    (pkg / "a.py").write_text("import dagster\nfrom bookbug_assets import b\n")
    (pkg / "b.py").write_text("def f():\n    from bookbug_assets.a import x\n")
    assert "dagster" in _imports(pkg / "a.py") and "bookbug_assets.b" in _imports(pkg / "a.py")
    assert "bookbug_assets.a" in _imports(pkg / "b.py")


def test_no_module_is_far_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 420}
    assert not long, long


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from bookbug_assets.definitions import build_definitions

    root = tmp_path_factory.mktemp("defs")
    return build_definitions(data_root=str(root), stories_dir=str(root), styles_dir="data/styles")


def test_every_spec_loads_from_the_defs_folder(loaded):
    repo = loaded.get_repository_def()
    assets = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert assets == {"style_dataset", "style_lora", "book_style", "story", "sprite_sheet", "hero_page", "book_pages",
                      "book_pdf", "book_interior", "book_cover", "generation_ledger", "cost_report",
                      "provider_experiment"}
    checks = {f"{k.asset_key.to_user_string()}:{k.name}" for k in repo.asset_graph.asset_check_keys}
    assert checks == {"sprite_sheet:sprite_sheet_quality", "hero_page:hero_page_quality",
                      "book_pages:page_quality", "book_pdf:book_pdf_preflight",
                      "book_interior:book_interior_preflight", "book_cover:book_cover_preflight"}
    assert {s.name for s in repo.sensor_defs} == {"story_folder_sensor", "style_folder_sensor", "review_sensor"}
    assert {"golden_books_job", "archive_book", "restore_book", "deliver_book", "archive_delivered_books"} <= {
        j.name for j in repo.get_all_jobs()}
    assert {s.name for s in repo.schedule_defs} == {"archive_delivered_books_schedule"}
    assert set(loaded.resources) == {"storage", "image_providers", "quality_judge"}
    for key in repo.asset_graph.get_all_asset_keys():  # every asset has a description, a group and a code version
        node = repo.asset_graph.get(key)
        assert node.description and node.group_name and node.code_version, key
