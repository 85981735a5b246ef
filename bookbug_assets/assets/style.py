"""style_dataset and style_lora: one partition per folder under data/styles/."""


import time
from pathlib import Path

import dagster as dg

from bookbug_assets.partitions import styles_partitions_for
from bookbug_assets.resources import BookbugStorage, ImageProviders
from bookbug_assets.styles import (
    StyleConfig, dataset_hash, dataset_items, dataset_palette, dataset_zip, load_style_config,
)
from bookbug_assets.training.pinning import pin_existing_lora


def style_key(style: str, name: str) -> str:
    return f"styles/{style}/{name}"


def build_style_assets(styles_dir: Path) -> list[dg.AssetsDefinition]:
    """The style partitions are the style folders present when definitions load."""
    styles_partitions = styles_partitions_for(styles_dir)

    @dg.asset(partitions_def=styles_partitions, group_name="style", code_version="1", kinds={"python"},
              description="The style's training set: images + captions, validated, hashed and zipped for trainers.")
    def style_dataset(context: dg.AssetExecutionContext, storage: BookbugStorage) -> dg.MaterializeResult:
        style = context.partition_key
        style_dir = storage.styles_path / style
        config = load_style_config(style_dir)
        items = dataset_items(style_dir)
        digest = dataset_hash(items, config)
        store = storage.store()
        zip_sha, zip_key = store.put_blob(dataset_zip(style_dir, items, config.trigger_word), ".zip")
        manifest = {"style": style, "config": config.model_dump(), "items": [i.model_dump() for i in items],
                    "dataset_sha256": digest, "zip_key": zip_key, "zip_sha256": zip_sha,
                    "palette": dataset_palette(style_dir, items)}
        store.write_json(style_key(style, "dataset.json"), manifest)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest[:16]),
            metadata={"images": len(items), "synthetic": config.synthetic, "dataset_sha256": digest,
                      "palette": ", ".join(manifest["palette"]), "trigger_word": config.trigger_word,
                      "trainer": config.trainer, "zip": store.uri(zip_key)})

    @dg.asset(partitions_def=styles_partitions, group_name="style", code_version="1", deps=[style_dataset],
              kinds={"python"}, pool="local_gpu",
              description="The style as models use it: a trained or pinned LoRA, or (trainer: none) a style "
                          "profile of prompt prefix, trigger word and palette with no LoRA.")
    def style_lora(context: dg.AssetExecutionContext, storage: BookbugStorage,
                   image_providers: ImageProviders) -> dg.MaterializeResult:
        style = context.partition_key
        store = storage.store()
        manifest = store.read_json(style_key(style, "dataset.json"))
        config = StyleConfig.model_validate(manifest["config"])
        profile = {"style": style, "prompt_prefix": config.prompt_prefix, "trigger_word": config.trigger_word,
                   "palette": manifest["palette"], "dataset_sha256": manifest["dataset_sha256"], "lora": None}
        metadata: dict = {}
        started = time.monotonic()
        if config.lora is not None:
            pinned = pin_existing_lora(store, config.lora, name=style)
            profile["lora"] = pinned.model_dump()
            metadata["lora_source"] = config.lora.source
            metadata["note"] = "Existing LoRA fetched once, hashed and pinned; later runs use the pinned copy."
        elif config.trainer == "none":
            metadata["note"] = ("No LoRA was trained: this style's trainer is 'none'. This is a style profile "
                                "(prompt prefix, trigger word, palette); set trainer: replicate | fal | local "
                                "in style.yaml to train one.")
        else:
            from bookbug_assets.training.run import train_style_lora

            trained = train_style_lora(context, store, image_providers, config, manifest, storage.styles_path)
            profile["lora"] = trained.lora.model_dump()
            metadata.update(trained.metadata)
        key = style_key(style, "lora.json")
        store.write_json(key, profile)
        lora = profile["lora"]
        return dg.MaterializeResult(
            data_version=dg.DataVersion((lora["sha256"] if lora else manifest["dataset_sha256"])[:16]),
            metadata={"lora_trained": bool(lora and config.trainer != "none" and not config.lora),
                      "lora": lora["name"] if lora else "none", "lora_sha256": lora["sha256"] if lora else "",
                      "trigger_word": config.trigger_word, "prompt_prefix": config.prompt_prefix,
                      "palette": ", ".join(profile["palette"]), "profile": store.uri(key),
                      "duration_s": round(time.monotonic() - started, 2), **metadata})

    return [style_dataset, style_lora]


def load_style_profile(storage: BookbugStorage, style: str, log) -> dict:
    """The materialized style_lora profile; an untrained profile from the folder if none exists yet."""
    store = storage.store()
    key = style_key(style, "lora.json")
    if store.exists(key):
        return store.read_json(key)
    style_dir = storage.styles_path / style
    config = load_style_config(style_dir)
    log.warning(f"style_lora[{style}] is not materialized; using an untrained profile of {style_dir.name}")
    return {"style": style, "prompt_prefix": config.prompt_prefix, "trigger_word": config.trigger_word,
            "palette": dataset_palette(style_dir, dataset_items(style_dir)), "lora": None}
