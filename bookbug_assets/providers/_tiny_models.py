"""Tiny random FLUX.1 and SDXL components, built offline: tokenizers from in-memory vocabularies.

For tests, CI and the benchmark's smoke run: no download, no files, a 64x64 image in well under a second on a CPU.
"""

from __future__ import annotations

from typing import Any


def _byte_unicode_symbols() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes (GPT-2's table)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = 0
    symbols = {}
    for b in range(256):
        if b in keep:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def build_tiny_tokenizers() -> tuple[Any, Any]:
    """A CLIP BPE tokenizer (bytes only, no merges) and a T5 unigram tokenizer (letters and digits)."""
    from transformers import CLIPTokenizer, T5Tokenizer

    clip_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for sym in _byte_unicode_symbols():
        clip_vocab.setdefault(sym, len(clip_vocab))
        clip_vocab.setdefault(sym + "</w>", len(clip_vocab))
    clip = CLIPTokenizer(vocab=clip_vocab, merges=[], model_max_length=77)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in chars] + [("▁" + c, -3.5) for c in chars]
    t5 = T5Tokenizer(vocab=pieces, extra_ids=100, model_max_length=512)
    return clip, t5


def build_tiny_flux_components(seed: int = 0) -> dict[str, Any]:
    """FLUX.1 components small enough to run a 64x64 image on a CPU in well under a second.

    The VAE has three blocks (scale factor 4), so a 64x64 image is 16x16 latents = 64 packed tokens.
    """
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    latent_channels = 4
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * latent_channels, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6))
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 8), layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=2, sample_size=64, use_quant_conv=False,
        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    torch.manual_seed(seed + 2)
    clip = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=600, hidden_act="gelu", projection_dim=32))
    torch.manual_seed(seed + 3)
    t5 = T5EncoderModel(T5Config(
        d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        vocab_size=200, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    clip_tok, t5_tok = build_tiny_tokenizers()
    # Constructors leave modules in training mode (T5's dropout would make every call random); from_pretrained
    # would have put them in eval mode.
    for module in (transformer, vae, clip, t5):
        module.eval()
    return dict(transformer=transformer, vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5,
                tokenizer_2=t5_tok, scheduler=FlowMatchEulerDiscreteScheduler())


def build_tiny_sdxl_components(seed: int = 0) -> dict[str, Any]:
    """SDXL components after diffusers' own pipeline tests, with offline tokenizers."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 size/crop ids x 8 + text_encoder_2's 32-d projection
        cross_attention_dim=64, norm_num_groups=4)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(8, 8), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=2, sample_size=64)
    config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=600, hidden_act="gelu", projection_dim=32)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(config)
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(config)
    clip_tok, _ = build_tiny_tokenizers()
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval()  # see build_tiny_flux_components
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=clip_tok,
                tokenizer_2=clip_tok, scheduler=scheduler, add_watermarker=False)
