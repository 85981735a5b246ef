"""Input schemas of the Replicate models bookbug uses, as the fake enforces them.

Sources: shared reference providers.md §1 (cog predictor sources and version
pages). Each entry:

- official: callable as POST /v1/models/{owner}/{name}/predictions without a version
- kind: "prediction" or "training"
- input: JSON schema (also served as openapi_schema.components.schemas.Input)
- output: JSON schema of the output ("uri" string or list of uris)
- nsfw_error: the prediction error the real model reports when its safety check trips
- sizing: how the output size follows the input (see _schema.nominal_size)
- max_safety_tolerance_with_image: BFL rule, a tighter cap once an input image is given
- lora_loader: whose LoRA loader the model runs ("cog_flux" | "lucataco"); see _replicate_lora_loaders.py
"""

from __future__ import annotations

import hashlib

from ._replicate_lora_loaders import LUCATACO_INVALID, lora_input_error  # noqa: F401 - the server's import
from ._schema import BOOL, FLUX1_SIZES, INT, STR, URI, dflt, enum, obj, rng
from .schemas_2026 import REPLICATE_2026_SCHEMAS

E005 = "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
NSFW_COG_FLUX = "All generated images contained NSFW content. Try running it again with a different prompt."
NSFW_KONTEXT_DEV = "Generated image contained NSFW content. Try running it again with a different prompt."
NSFW_DIFFUSERS = "NSFW content detected. Try running it again, or try a different prompt."

def uris(max_items: int | None = None) -> dict:
    out = {"type": "array", "items": URI, "default": []}
    if max_items is not None:
        out["maxItems"] = max_items
    return out


URI_OUT = {"type": "string", "format": "uri", "title": "Output"}
LIST_OUT = {"type": "array", "items": {"type": "string", "format": "uri"}, "title": "Output"}

GEMINI_RATIOS = ["match_input_image", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
FLUX1_RATIOS = list(FLUX1_SIZES)
KONTEXT_DEV_RATIOS = FLUX1_RATIOS + ["match_input_image"]
BFL_RATIOS = ["match_input_image", "21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]
FLUX2_RATIOS = ["match_input_image", "custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"]
OUT_FMT3 = enum(["webp", "jpg", "png"], "webp")
QUALITY = rng("integer", 0, 100, 80)

_BFL_EDIT = {
    "prompt": STR,
    "input_image": URI,
    "aspect_ratio": enum(BFL_RATIOS, "match_input_image"),
    "prompt_upsampling": dflt(BOOL, False),
    "seed": INT,
    "output_format": enum(["jpg", "png"], "png"),
    "safety_tolerance": rng("integer", 0, 6, 2),
}
_BFL_MULTI = {
    "prompt": STR,
    "input_image_1": URI,
    "input_image_2": URI,
    "aspect_ratio": enum(BFL_RATIOS, "match_input_image"),
    "seed": INT,
    "output_format": enum(["jpg", "png"], "png"),
    "safety_tolerance": rng("integer", 0, 2, 2),
}
_FLUX_DEV = {
    "prompt": STR,
    "aspect_ratio": enum(FLUX1_RATIOS, "1:1"),
    "image": URI,
    "prompt_strength": rng("number", 0, 1, 0.8),
    "num_outputs": rng("integer", 1, 4, 1),
    "num_inference_steps": rng("integer", 1, 50, 28),
    "guidance": rng("number", 0, 10, 3),
    "seed": INT,
    "output_format": OUT_FMT3,
    "output_quality": QUALITY,
    "disable_safety_checker": dflt(BOOL, False),
    "go_fast": dflt(BOOL, True),
    "megapixels": enum(["1", "0.25"], "1"),
}
_LORA_EXTRA = {
    "lora_weights": STR,
    "lora_scale": rng("number", -1, 3, 1.0),
    "extra_lora": STR,
    "extra_lora_scale": rng("number", -1, 3, 1.0),
    "hf_api_token": STR,
    "civitai_api_token": STR,
}

REPLICATE_MODEL_SCHEMAS: dict[str, dict] = {
    "google/nano-banana-pro": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": E005,
        "sizing": {"mode": "area", "default_ar": "match_input_image"},
        "input": obj({
            "prompt": STR,
            "image_input": uris(14),
            "aspect_ratio": enum(GEMINI_RATIOS, "match_input_image"),
            "resolution": enum(["1K", "2K", "4K"], "2K"),
            "output_format": enum(["jpg", "png"], "jpg"),
            "safety_filter_level": enum(
                ["block_low_and_above", "block_medium_and_above", "block_only_high"], "block_only_high"),
        }, ["prompt"]),
    },
    "google/nano-banana": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": E005,
        "sizing": {"mode": "area", "default_ar": "match_input_image"},
        "input": obj({
            "prompt": STR,
            "image_input": uris(),
            "aspect_ratio": enum(GEMINI_RATIOS, "match_input_image"),
            "output_format": enum(["jpg", "png"], "jpg"),
        }, ["prompt"]),
    },
    "black-forest-labs/flux-kontext-dev": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": NSFW_KONTEXT_DEV,
        "sizing": {"mode": "kontext", "default_ar": "match_input_image"},
        "input": obj({
            "prompt": STR,
            "input_image": URI,
            "aspect_ratio": enum(KONTEXT_DEV_RATIOS, "match_input_image"),
            "num_inference_steps": rng("integer", 4, 50, 28),
            "guidance": rng("number", 0, 10, 2.5),
            "seed": INT,
            "output_format": OUT_FMT3,
            "output_quality": QUALITY,
            "disable_safety_checker": dflt(BOOL, False),
            "go_fast": dflt(BOOL, True),
        }, ["prompt", "input_image"]),
    },
    "black-forest-labs/flux-kontext-pro": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": E005,
        "sizing": {"mode": "kontext", "default_ar": "match_input_image"},
        "max_safety_tolerance_with_image": 2,
        "input": obj(dict(_BFL_EDIT), ["prompt"]),
    },
    "black-forest-labs/flux-kontext-max": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": E005,
        "sizing": {"mode": "kontext", "default_ar": "match_input_image"},
        "max_safety_tolerance_with_image": 2,
        "input": obj(dict(_BFL_EDIT), ["prompt"]),
    },
    "flux-kontext-apps/multi-image-kontext-pro": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": E005,
        "sizing": {"mode": "kontext", "default_ar": "match_input_image"},
        "input": obj(dict(_BFL_MULTI), ["prompt", "input_image_1", "input_image_2"]),
    },
    "flux-kontext-apps/multi-image-kontext-max": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": E005,
        "sizing": {"mode": "kontext", "default_ar": "match_input_image"},
        "input": obj(dict(_BFL_MULTI), ["prompt", "input_image_1", "input_image_2"]),
    },
    "black-forest-labs/flux-dev": {
        "official": True, "kind": "prediction", "output": LIST_OUT, "nsfw_error": NSFW_COG_FLUX,
        "sizing": {"mode": "flux1"},
        "input": obj(dict(_FLUX_DEV), ["prompt"]),
    },
    "black-forest-labs/flux-dev-lora": {
        "official": True, "kind": "prediction", "output": LIST_OUT, "nsfw_error": NSFW_COG_FLUX,
        "sizing": {"mode": "flux1"}, "lora_loader": "cog_flux",
        "input": obj({**_FLUX_DEV, **_LORA_EXTRA}, ["prompt"]),
    },
    "lucataco/flux-dev-lora": {
        "official": False, "kind": "prediction", "output": LIST_OUT, "nsfw_error": NSFW_DIFFUSERS,
        "sizing": {"mode": "flux1"}, "lora_loader": "lucataco",
        "input": obj({
            "prompt": STR,
            "aspect_ratio": enum(FLUX1_RATIOS, "1:1"),
            "image": URI,
            "prompt_strength": rng("number", 0, 1, 0.8),
            "num_outputs": rng("integer", 1, 4, 1),
            "num_inference_steps": rng("integer", 1, 50, 28),
            "guidance_scale": rng("number", 0, 10, 3.5),
            "seed": INT,
            "output_format": OUT_FMT3,
            "output_quality": QUALITY,
            "hf_lora": STR,
            "lora_scale": rng("number", 0, 1, 0.8),
            "disable_safety_checker": dflt(BOOL, False),
        }, ["prompt"]),
    },
    "black-forest-labs/flux-2-dev": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": NSFW_COG_FLUX,
        "sizing": {"mode": "area"},
        "input": obj({
            "prompt": STR,
            "input_images": uris(4),
            "go_fast": dflt(BOOL, True),
            "aspect_ratio": enum(FLUX2_RATIOS, "1:1"),
            "width": rng("integer", 256, 1440),
            "height": rng("integer", 256, 1440),
            "seed": INT,
            "output_format": OUT_FMT3,
            "output_quality": QUALITY,
            "disable_safety_checker": dflt(BOOL, False),
        }, ["prompt"]),
    },
    "black-forest-labs/flux-2-pro": {
        "official": True, "kind": "prediction", "output": URI_OUT, "nsfw_error": E005,
        "sizing": {"mode": "area"},
        "input": obj({
            "prompt": STR,
            "input_images": uris(8),
            "aspect_ratio": enum(FLUX2_RATIOS, "1:1"),
            "resolution": enum(["match_input_image", "0.5 MP", "1 MP", "2 MP", "4 MP"], "1 MP"),
            "width": rng("integer", 256, 2048),
            "height": rng("integer", 256, 2048),
            "safety_tolerance": rng("integer", 1, 5, 2),
            "seed": INT,
            "output_format": OUT_FMT3,
            "output_quality": QUALITY,
        }, ["prompt"]),
    },
    # https://replicate.com/bytedance/seedream-4/versions/e6cff243.../api (enhance_prompt: version 3ee3b70d)
    "bytedance/seedream-4": {
        "official": True, "kind": "prediction", "output": LIST_OUT, "nsfw_error": E005,
        "sizing": {"mode": "area", "default_ar": "match_input_image", "resolution_field": "size"},
        "input": obj({
            "prompt": STR,
            "image_input": uris(10),
            "size": enum(["1K", "2K", "4K", "custom"], "2K"),
            "aspect_ratio": enum(["match_input_image", "1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9"],
                                 "match_input_image"),
            "width": rng("integer", 1024, 4096, 2048),
            "height": rng("integer", 1024, 4096, 2048),
            "sequential_image_generation": enum(["disabled", "auto"], "disabled"),
            "max_images": rng("integer", 1, 15, 1),
            "enhance_prompt": dflt(BOOL, True),
        }, ["prompt"]),
    },
    "stability-ai/sdxl": {
        "official": False, "kind": "prediction", "output": LIST_OUT, "nsfw_error": NSFW_DIFFUSERS,
        "sizing": {"mode": "wh", "default": (1024, 1024)},
        "input": obj({
            "prompt": dflt(STR, "An astronaut riding a rainbow unicorn"),
            "negative_prompt": dflt(STR, ""),
            "image": URI,
            "mask": URI,
            "width": dflt(INT, 1024),
            "height": dflt(INT, 1024),
            "num_outputs": rng("integer", 1, 4, 1),
            "scheduler": enum(["DDIM", "DPMSolverMultistep", "HeunDiscrete", "KarrasDPM",
                               "K_EULER_ANCESTRAL", "K_EULER", "PNDM"], "K_EULER"),
            "num_inference_steps": rng("integer", 1, 500, 50),
            "guidance_scale": rng("number", 1, 50, 7.5),
            "prompt_strength": rng("number", 0, 1, 0.8),
            "seed": INT,
            "refine": enum(["no_refiner", "expert_ensemble_refiner", "base_image_refiner"], "no_refiner"),
            "high_noise_frac": rng("number", 0, 1, 0.8),
            "refine_steps": INT,
            "apply_watermark": dflt(BOOL, True),
            "lora_scale": rng("number", 0, 1, 0.6),
            "replicate_weights": STR,
            "disable_safety_checker": dflt(BOOL, False),
        }),
    },
    "ostris/flux-dev-lora-trainer": {
        "official": False, "kind": "training", "output": {
            "type": "object", "title": "TrainingOutput",
            "properties": {"weights": {"type": "string", "format": "uri"}}},
        "nsfw_error": None, "sizing": {},
        "weights_path_in_tar": "output/flux_train_replicate/lora.safetensors",
        "input": obj({
            "input_images": URI,
            "trigger_word": dflt(STR, "TOK"),
            "autocaption": dflt(BOOL, True),
            "autocaption_prefix": STR,
            "autocaption_suffix": STR,
            "steps": rng("integer", 3, 6000, 1000),
            "learning_rate": dflt({"type": "number"}, 0.0004),
            "batch_size": dflt(INT, 1),
            "resolution": dflt(STR, "512,768,1024"),
            "lora_rank": rng("integer", 1, 128, 16),
            "caption_dropout_rate": rng("number", 0, 1, 0.05),
            "optimizer": dflt(STR, "adamw8bit"),
            "cache_latents_to_disk": dflt(BOOL, False),
            "layers_to_optimize_regex": STR,
            "gradient_checkpointing": dflt(BOOL, False),
            "hf_repo_id": STR,
            "hf_token": STR,
            "wandb_api_key": STR,
            "wandb_project": STR,
            "wandb_run_name": STR,
            "wandb_entity": STR,
            "wandb_sample_interval": INT,
            "wandb_sample_prompts": STR,
            "wandb_save_interval": INT,
            "skip_training_and_use_pretrained_hf_lora_url": STR,
        }),
    },
}

# --- judge models: vision-language models answering text (quality/judge_models_table.py has the sources) ---------
# `judge`: where the images go and whether they arrive as one side-by-side picture; the fake answers from image 1
# (_judge_answers). `prompt` is required here although the OpenAI pages allow `messages` instead: the judge always
# sends a prompt, and the fake has one rule fewer to get wrong.
TEXT_OUT = {"type": "array", "items": {"type": "string"}, "title": "Output", "x-cog-array-type": "iterator",
            "x-cog-array-display": "concatenate"}
STRING_OUT = {"type": "string", "title": "Output"}
_OPENAI_CHAT = {
    "prompt": STR,
    "system_prompt": STR,
    "messages": {"type": "array", "default": []},
    "image_input": uris(),
    "temperature": rng("number", 0, 2, 1),
    "max_completion_tokens": dflt(INT, 4096),
    "top_p": rng("number", 0, 1, 1),
    "frequency_penalty": rng("number", -2, 2, 0),
    "presence_penalty": rng("number", -2, 2, 0),
}
_GPT5 = {
    "prompt": STR,
    "system_prompt": STR,
    "messages": {"type": "array", "default": []},
    "image_input": uris(),
    "reasoning_effort": enum(["minimal", "low", "medium", "high"], "minimal"),
    "verbosity": enum(["low", "medium", "high"], "medium"),
    "max_completion_tokens": INT,
}


def _judge(inputs: dict, images: str, output: dict = TEXT_OUT, side_by_side: bool = False) -> dict:
    return {"official": True, "kind": "prediction", "output": output, "nsfw_error": E005, "sizing": {},
            "judge": {"images": images, "side_by_side": side_by_side}, "input": obj(inputs, ["prompt"])}


REPLICATE_MODEL_SCHEMAS.update({
    "openai/gpt-4o": _judge(_OPENAI_CHAT, "image_input"),
    "openai/gpt-4.1": _judge(_OPENAI_CHAT, "image_input"),
    "openai/gpt-4.1-mini": _judge(_OPENAI_CHAT, "image_input", STRING_OUT),
    "openai/gpt-5": _judge(_GPT5, "image_input"),
    "google/gemini-2.5-flash": _judge({
        "prompt": STR,
        "images": uris(10),
        "videos": uris(10),
        "system_instruction": STR,
        "temperature": rng("number", 0, 2, 1),
        "top_p": rng("number", 0, 1, 0.95),
        "max_output_tokens": rng("integer", 1, 65535, 65535),
        "thinking_budget": rng("integer", 0, 24576),
        "dynamic_thinking": dflt(BOOL, False),
    }, "images"),
    "anthropic/claude-4-sonnet": _judge({
        "prompt": STR,
        "image": URI,
        "system_prompt": dflt(STR, ""),
        "max_tokens": rng("integer", 1024, 64000, 8192),
        "max_image_resolution": rng("number", 0.001, 2, 0.5),
        "extended_thinking": dflt(BOOL, False),
        "thinking_budget_tokens": rng("integer", 1024, 100000, 10000),
    }, "image", side_by_side=True),
})
REPLICATE_MODEL_SCHEMAS.update(REPLICATE_2026_SCHEMAS)  # the 2026 multi-reference edit models

# Versions the trainer pushes to a destination model run Replicate's hotswap LoRA predictor.
TRAINED_DESTINATION_SCHEMA: dict = {
    "official": False, "kind": "prediction", "output": LIST_OUT, "nsfw_error": NSFW_COG_FLUX,
    "sizing": {"mode": "flux1"},
    "input": obj({
        "prompt": STR,
        "image": URI,
        "mask": URI,
        "aspect_ratio": enum(FLUX1_RATIOS + ["custom"], "1:1"),
        "width": rng("integer", 256, 1440),
        "height": rng("integer", 256, 1440),
        "prompt_strength": rng("number", 0, 1, 0.8),
        "model": enum(["dev", "schnell"], "dev"),
        "num_outputs": rng("integer", 1, 4, 1),
        "num_inference_steps": rng("integer", 1, 50, 28),
        "guidance_scale": rng("number", 0, 10, 3),
        "seed": INT,
        "output_format": OUT_FMT3,
        "output_quality": QUALITY,
        "disable_safety_checker": dflt(BOOL, False),
        "go_fast": dflt(BOOL, False),
        "megapixels": enum(["1", "0.25"], "1"),
        "lora_scale": rng("number", -1, 3, 1.0),
        "extra_lora": STR,
        "extra_lora_scale": rng("number", -1, 3, 1.0),
        "replicate_weights": STR,
    }, ["prompt"]),
}


def version_id_for(model: str, salt: str = "") -> str:
    """Stable 64-hex version id per model, like Replicate's sha256-style ids."""
    return hashlib.sha256(f"bookbug-fake:{model}:{salt}".encode()).hexdigest()


def openapi_schema(spec: dict) -> dict:
    schemas = {"Input": {"title": "Input", **spec["input"]}, "Output": spec["output"]}
    if spec["kind"] == "training":
        schemas["TrainingInput"] = schemas["Input"]
        schemas["TrainingOutput"] = spec["output"]
    return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": {},
            "components": {"schemas": schemas}}
