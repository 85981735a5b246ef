"""style_dataset and style_lora: one partition per accepted folder under data/styles/ (the style sensor adds them)."""

import time
from pathlib import Path

import dagster as dg

from bookbug_assets.defs.books.book_style import observe_books_of_style
from bookbug_assets.defs.partitions import styles_partitions
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders
from bookbug_assets.defs.styles.local_training import run_local_lora_training
from bookbug_assets.layout import style_dataset_key, style_profile_key
from bookbug_assets.quality.verdicts import style_quality_profile
from bookbug_assets.styles import (
    StyleConfig, dataset_hash, dataset_items, dataset_palette, dataset_zip, inputs_hash, load_style_config,
)
from bookbug_assets.training.pinning import pin_existing_lora
from bookbug_assets.training.run import train_style_lora

# How long a cloud training may take, in units of one image job's deadline.
TRAINING_DEADLINE_JOBS = 12


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
    store.write_json(style_dataset_key(style), manifest)
    # The quality gate's profile and the style's own off-style limit, calibrated here so the first book does not
    # wait for it and the limit shows with the dataset (README "Tuning a style's gate").
    calibration = style_quality_profile(store, storage.styles_path, style).calibration
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest[:16]),
        metadata={"images": len(items), "synthetic": config.synthetic, "dataset_sha256": digest,
                  "inputs_sha256": inputs_hash(items, config),  # a book run skips a style whose inputs match
                  "palette": ", ".join(manifest["palette"]), "trigger_word": config.trigger_word,
                  "trainer": config.trainer, "zip": store.uri(zip_key),
                  "style_gate_limit": calibration.limit, "style_gate_calibration": calibration.describe()})

@dg.asset(partitions_def=styles_partitions, group_name="style", code_version="1", deps=[style_dataset],
          kinds={"python"}, pool="local_gpu",
          description="The style as models use it: a trained or pinned LoRA, or (trainer: none) a style "
                      "profile of prompt prefix, trigger word and palette with no LoRA.")
def style_lora(context: dg.AssetExecutionContext, storage: BookbugStorage,
               image_providers: ImageProviders) -> dg.MaterializeResult:
    style = context.partition_key
    store = storage.store()
    manifest = store.read_json(style_dataset_key(style))
    config = StyleConfig.model_validate(manifest["config"])
    profile = {"style": style, "prompt_prefix": config.prompt_prefix, "trigger_word": config.trigger_word,
               "palette": manifest["palette"], "dataset_sha256": manifest["dataset_sha256"], "lora": None}
    metadata: dict = {}
    started = time.monotonic()
    if config.lora is not None:
        pinned = pin_existing_lora(store, config.lora, name=style, models_dir=storage.models_path)
        profile["lora"] = pinned.model_dump()
        metadata["lora_source"] = config.lora.source
        metadata["note"] = "Existing LoRA fetched once, hashed and pinned; later runs use the pinned copy."
    elif config.trainer == "none":
        metadata["note"] = ("No LoRA was trained: this style's trainer is 'none'. This is a style profile "
                            "(prompt prefix, trigger word, palette); set trainer: replicate | fal | local "
                            "in style.yaml to train one.")
    else:
        def run_local(local_config, dataset_dir, output_dir, trigger_word):
            return run_local_lora_training(context, dg.PipesSubprocessClient(), dataset_dir=dataset_dir,
                                           output_dir=output_dir, trigger_word=trigger_word, config=local_config)

        trained = train_style_lora(store, image_providers.settings(), image_providers.local, config, manifest,
                                   storage.styles_path, run_id=context.run.run_id, log=context.log,
                                   deadline_s=image_providers.job_deadline_s * TRAINING_DEADLINE_JOBS,
                                   run_local=run_local)
        profile["lora"] = trained.lora.model_dump()
        metadata.update(trained.metadata)
    key = style_profile_key(style)
    store.write_json(key, profile)
    books = observe_books_of_style(context, store, style)  # their images now follow an older version of it
    lora = profile["lora"]
    return dg.MaterializeResult(
        data_version=dg.DataVersion((lora["sha256"] if lora else manifest["dataset_sha256"])[:16]),
        metadata={"lora_trained": bool(lora and config.trainer != "none" and not config.lora),
                  "lora": lora["name"] if lora else "none", "lora_sha256": lora["sha256"] if lora else "",
                  "trigger_word": config.trigger_word, "prompt_prefix": config.prompt_prefix,
                  "palette": ", ".join(profile["palette"]), "profile": store.uri(key),
                  "duration_s": round(time.monotonic() - started, 2),
                  "books_in_this_style": ", ".join(books) or "none", **metadata})



def build_style_assets() -> list[dg.AssetsDefinition]:
    return [style_dataset, style_lora]


@dg.definitions
def style_defs() -> dg.Definitions:
    return dg.Definitions(assets=build_style_assets())
