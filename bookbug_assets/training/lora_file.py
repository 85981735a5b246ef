"""What a LoRA file is: a safetensors file whose header parses and names LoRA weights of the declared family.

The format (https://github.com/huggingface/safetensors#format): 8 bytes holding N, a little-endian unsigned
64-bit integer; N bytes of JSON, an object mapping each tensor name to {dtype, shape, data_offsets: [begin,
end]} (byte offsets into the data after the header, contiguous from 0) plus an optional "__metadata__" object of
strings; then the data. It is parsed here without torch, from the first bytes of a file or a download, so
anything else (a text file, an HTML error page, a full checkpoint) is refused before it is stored or sent on.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass

# The reference implementation refuses larger headers (MAX_HEADER_SIZE in safetensors/src/tensor.rs,
# https://github.com/huggingface/safetensors); a LoRA's header, a few hundred names, is far smaller.
MAX_HEADER_BYTES = 100_000_000
# Why 2 GiB: a FLUX.1 LoRA at rank 16 is about 90 MB in bf16 and the trainers' largest rank, 128, about 0.7 GB
# (1.4 GB in fp32), while a full FLUX.1 [dev] transformer is about 24 GB: the cap takes every LoRA the trainers
# make and refuses checkpoints and endless downloads.
MAX_LORA_BYTES = 2 * 1024 ** 3

# Bytes per element of the dtypes the format defines for whole-byte types.
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

# A LoRA stores each adapted layer as a pair of low-rank matrices: PEFT/diffusers name them lora_A/lora_B,
# kohya-ss lora_down/lora_up, older diffusers lora.down/lora.up (or lora_linear_layer.down/up).
_DOWN = re.compile(r"[._](?:lora_A|lora_down|lora\.down|lora_linear_layer\.down)\.")
_UP = re.compile(r"[._](?:lora_B|lora_up|lora\.up|lora_linear_layer\.up)\.")
# FLUX transformers: double-stream blocks (diffusers `transformer_blocks`, BFL `double_blocks`) and single-stream
# blocks (`single_transformer_blocks`, `single_blocks`); kohya-ss writes the same names with underscores.
_FLUX_BLOCK = re.compile(r"(?:^|[._])(single_transformer_blocks|single_blocks|double_blocks|"
                         r"(?<!single_)transformer_blocks)[._](\d+)[._]")
# SDXL's UNet (diffusers down_blocks/mid_block/up_blocks, original input_blocks/middle_block/output_blocks).
_UNET_PART = re.compile(r"(?:^|[._])(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)[._]")
# FLUX.1 has 19 double-stream and 38 single-stream blocks (depth=19, depth_single_blocks=38 in
# https://github.com/black-forest-labs/flux/blob/main/src/flux/util.py); a higher index is another model.
_FLUX1_BLOCKS = {"double": 19, "single": 38}


class LoraFileError(ValueError):
    """Why these bytes are not a LoRA; the caller says which style and field they came from."""


@dataclass(frozen=True)
class SafetensorsHeader:
    header_bytes: int  # N
    data_bytes: int  # the end of the last tensor's data
    tensors: dict[str, dict]

    @property
    def total_bytes(self) -> int:
        return 8 + self.header_bytes + self.data_bytes


def header_length(prefix: bytes) -> int:
    """N from the first 8 bytes, refused when no safetensors file could have it."""
    if len(prefix) < 8:
        raise LoraFileError(f"not a safetensors file: {len(prefix)} bytes, shorter than its 8-byte length field")
    (length,) = struct.unpack("<Q", bytes(prefix[:8]))
    if length < 2 or length > MAX_HEADER_BYTES:
        raise LoraFileError(f"not a safetensors file: its header length field says {length} bytes "
                            f"(at most {MAX_HEADER_BYTES})")
    return length


def parse_header(prefix: bytes) -> SafetensorsHeader:
    """The header in the first 8 + N bytes of a file; every tensor's dtype, shape and offsets must agree."""
    length = header_length(prefix)
    raw = bytes(prefix[8:8 + length])
    if len(raw) < length:
        raise LoraFileError(f"not a safetensors file: it ends inside its {length}-byte header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise LoraFileError("not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise LoraFileError("not a safetensors file: its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise LoraFileError("not a safetensors file: __metadata__ is not an object of strings")
    spans = []
    for name, info in header.items():
        spans.append((*_tensor_span(name, info), name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise LoraFileError(f"not a safetensors file: tensor {_short(name)} does not start where the one "
                                "before it ends")
        end = stop
    return SafetensorsHeader(header_bytes=length, data_bytes=end, tensors=header)


def _tensor_span(name: str, info: object) -> tuple[int, int]:
    if not isinstance(info, dict):
        raise LoraFileError(f"not a safetensors file: tensor {_short(name)} has no dtype, shape and offsets")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise LoraFileError(f"not a LoRA: tensor {_short(name)} has dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise LoraFileError(f"not a safetensors file: tensor {_short(name)} has no valid shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise LoraFileError(f"not a safetensors file: tensor {_short(name)} has no valid data_offsets")
    if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise LoraFileError(f"not a safetensors file: tensor {_short(name)}'s offsets do not fit its shape")
    return offsets[0], offsets[1]


def check_lora(header: SafetensorsHeader, family: str) -> None:
    """The tensors are LoRA pairs, and their layer names belong to the declared family's model."""
    names = list(header.tensors)
    if not any(_DOWN.search(n) for n in names) or not any(_UP.search(n) for n in names):
        raise LoraFileError("not a LoRA: the file holds no lora_A/lora_B (or lora_down/lora_up) weight pairs")
    blocks = [m for m in (_FLUX_BLOCK.search(n) for n in names) if m]
    unet = any(_UNET_PART.search(n) for n in names)
    if family in ("flux1", "flux2"):
        if unet or not blocks:
            raise LoraFileError(f"not a {family} LoRA: its layer names are not those of a FLUX transformer "
                                "(transformer_blocks / single_transformer_blocks, double_blocks / single_blocks)")
        if family == "flux1":
            for match in blocks:
                kind = "single" if match.group(1).startswith("single") else "double"
                if int(match.group(2)) >= _FLUX1_BLOCKS[kind]:
                    raise LoraFileError(f"not a flux1 LoRA: it adapts {kind}-stream block {match.group(2)}, and "
                                        f"FLUX.1 has {_FLUX1_BLOCKS[kind]}")
    elif family == "sdxl":
        if not unet or any(m.group(1) in ("double_blocks", "single_blocks", "single_transformer_blocks")
                           for m in blocks):
            raise LoraFileError("not an sdxl LoRA: its layer names are not those of the SDXL UNet "
                                "(down_blocks / mid_block / up_blocks)")
    else:
        raise LoraFileError(f"unknown LoRA family {family!r}")


def _short(name: str) -> str:
    """A tensor name for a message: printable, and short (names come from the file)."""
    clean = "".join(c if c.isprintable() else "?" for c in name)
    return repr(clean if len(clean) <= 80 else clean[:77] + "...")
