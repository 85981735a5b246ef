"""safetensors files for the LoRA-source tests: a FLUX.1 LoRA, other models' LoRAs, and files that are not LoRAs."""

from __future__ import annotations

import json
import struct

from tests.fakes._media import safetensors_bytes

FLUX_LORA = safetensors_bytes(rank=4)  # transformer.single_transformer_blocks.0.attn.to_k.lora_A/B


def safetensors(tensors: dict[str, list[int]], dtype: str = "F16") -> bytes:
    """A valid safetensors file holding zero-filled tensors of these shapes."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors.items():
        size = 2
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def lora_pair(prefix: str, rank: int = 4, width: int = 8) -> dict[str, list[int]]:
    return {f"{prefix}.lora_A.weight": [rank, width], f"{prefix}.lora_B.weight": [width, rank]}


NOT_A_LORA = safetensors({"transformer.transformer_blocks.0.attn.to_q.weight": [8, 8]})  # a checkpoint's weights
_SDXL_LAYER = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k"
SDXL_LORA = safetensors({f"{_SDXL_LAYER}.lora_down.weight": [4, 8], f"{_SDXL_LAYER}.lora_up.weight": [8, 4]})
KOHYA_FLUX_LORA = safetensors({"lora_unet_double_blocks_3_img_attn_qkv.lora_down.weight": [4, 8],
                               "lora_unet_double_blocks_3_img_attn_qkv.lora_up.weight": [8, 4]})
# Single-stream block 40: FLUX.1 has 38 (FLUX.2 [dev] has 48).
FLUX2_SHAPED_LORA = safetensors(lora_pair("transformer.single_transformer_blocks.40.attn.to_k"))


def with_header_length(length: int, body: bytes = b"{}") -> bytes:
    return struct.pack("<Q", length) + body
