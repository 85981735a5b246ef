"""Issue 16 items 2 and 3: styles are dynamic partitions a sensor adds and builds, validated with a reason file;
a book goes stale when its own style changes and never when another style does."""

import shutil

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from bookbug_assets.defs.book_runs import BookGraph, _assets, materialize_book
from bookbug_assets.defs.styles.sensors import style_folder_sensor
from bookbug_assets.stories import load_story_file
from bookbug_assets.style_intake import REASON_FILE
from tests.conftest import EXAMPLE

PAGE = "pip-and-the-lantern|001"


def _status(instance, defs, key: str, partition: str):
    resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))
    return resolver.get_status(dg.AssetKey(key), partition), resolver.get_stale_causes(dg.AssetKey(key), partition)


def _tick(defs, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"storage": defs.resources["storage"]})
    return style_folder_sensor(context)


def _build_style(defs, instance, style):
    if style not in instance.get_dynamic_partitions("styles"):
        instance.add_dynamic_partitions("styles", [style])
    graph = BookGraph.of(defs)
    result = dg.materialize(_assets(graph, "style_dataset", "style_lora"), partition_key=style, instance=instance,
                            resources=graph.resources)
    assert result.success


def test_a_book_is_stale_only_when_its_own_style_changes(workspace, defs_for, instance):
    shutil.copytree(workspace["styles"] / "soft-meadow", workspace["styles"] / "chibi")
    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow", "chibi"})
    defs = defs_for()
    assert all(r.success for r in materialize_book(defs, instance, story, echo=lambda *_: None).values())
    assert _status(instance, defs, "book_pages", PAGE)[0] == StaleStatus.FRESH

    _build_style(defs, instance, "chibi")  # another style is trained: this book is not touched
    assert _status(instance, defs, "sprite_sheet", story.book_id) == (StaleStatus.FRESH, [])
    assert _status(instance, defs, "book_pages", PAGE)[0] == StaleStatus.FRESH

    config_path = workspace["styles"] / "soft-meadow" / "style.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["prompt_prefix"] = config.get("prompt_prefix", "") + " with thicker outlines"
    config_path.write_text(yaml.safe_dump(config))
    _build_style(defs, instance, "soft-meadow")  # its own style changed
    status, causes = _status(instance, defs, "sprite_sheet", story.book_id)
    assert status == StaleStatus.STALE and "book_style" in str(causes)
    assert _status(instance, defs, "hero_page", story.book_id)[0] == StaleStatus.STALE


def test_a_new_style_folder_is_added_and_built_without_a_reload(workspace, defs_for, instance):
    defs = defs_for()  # loaded before the folder exists
    first = _tick(defs, instance)
    assert [r.partition_key for r in first.run_requests] == ["soft-meadow"]
    for request in first.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))

    shutil.copytree(workspace["styles"] / "soft-meadow", workspace["styles"] / "watercolor")
    second = _tick(defs, instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["watercolor"]
    assert second.run_requests[0].asset_selection == [dg.AssetKey("style_dataset"), dg.AssetKey("style_lora")]
    assert [list(r.partition_keys) for r in second.dynamic_partitions_requests] == [["watercolor"]]
    assert _tick(defs, instance, second.cursor).skip_reason  # nothing changed: nothing requested


def test_an_invalid_style_gets_a_reason_file_until_it_is_fixed(workspace, defs_for, instance):
    empty = workspace["styles"] / "chibi"
    empty.mkdir()
    shutil.copy(workspace["styles"] / "soft-meadow" / "style.yaml", empty / "style.yaml")  # no images yet
    defs = defs_for()
    result = _tick(defs, instance)
    assert "chibi" not in [r.partition_key for r in result.run_requests]
    reason = (empty / REASON_FILE).read_text()
    assert "images" in reason and "style dataset needs" in reason

    shutil.copytree(workspace["styles"] / "soft-meadow" / "images", empty / "images")
    fixed = _tick(defs, instance, result.cursor)
    assert [r.partition_key for r in fixed.run_requests] == ["chibi"] and not (empty / REASON_FILE).exists()


@pytest.mark.parametrize("kind", ["symlinked folder", "symlinked style.yaml"])
def test_links_are_refused_not_followed(workspace, defs_for, instance, tmp_path, kind):
    outside = tmp_path / "outside"
    shutil.copytree(workspace["styles"] / "soft-meadow", outside)
    if kind == "symlinked folder":
        (workspace["styles"] / "linked").symlink_to(outside, target_is_directory=True)
    else:
        shutil.copytree(outside, workspace["styles"] / "linked", ignore=shutil.ignore_patterns("style.yaml"))
        (workspace["styles"] / "linked" / "style.yaml").symlink_to(outside / "style.yaml")
    result = _tick(defs_for(), instance)
    assert "linked" not in [r.partition_key for r in result.run_requests]
    assert not (outside / REASON_FILE).exists()  # never written through the link


def test_a_style_make_demo_already_built_only_gets_its_partition(workspace, defs_for, instance):
    defs = defs_for()
    instance.add_dynamic_partitions("styles", ["soft-meadow"])
    _build_style(defs, instance, "soft-meadow")
    result = _tick(defs, instance)
    assert not result.run_requests


def test_a_style_whose_dataset_is_built_but_not_its_lora_is_built_again(workspace, defs_for, instance):
    """Books wait for their style's style_lora (the story sensor): a style left half built must be requested."""
    defs = defs_for()
    instance.add_dynamic_partitions("styles", ["soft-meadow"])
    graph = BookGraph.of(defs)
    assert dg.materialize(_assets(graph, "style_dataset"), partition_key="soft-meadow", instance=instance,
                          resources=graph.resources).success
    result = _tick(defs, instance)
    assert [r.partition_key for r in result.run_requests] == ["soft-meadow"]
