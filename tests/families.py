"""Tiny random-weight pipelines of each model family, built from configs as diffusers' own tests build them.

Nothing comes from a hub: the embedded model's CLIP tokenizer fills every tokenizer slot (T5's
included), so every text encoder's vocabulary is CLIP's. Each builder saves a diffusers pipeline
folder (model_index.json and safetensors) and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sdviz.sampling.models import SHAPES_MODEL

TOKENIZER = SHAPES_MODEL / "tokenizer"
CLIP_VOCAB = 49408  # the CLIP tokenizer's vocabulary: every text encoder here must embed all its ids


def _tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(TOKENIZER)


def _clip_config(hidden: int, projection: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407, projection_dim=projection,
    )


def _t5(width: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=CLIP_VOCAB, d_model=width, d_kv=8, d_ff=2 * width, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=49407, eos_token_id=49407,
    ))


def _vae(latent_channels: int, **config):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=latent_channels, norm_num_groups=16,
        sample_size=32, **config,
    )


def build_sdxl(folder: Path) -> Path:
    """SDXL's layout: two CLIP encoders (the second with a projection, giving the pooled embedding), a UNet
    with text-time added conditioning, an Euler scheduler config, a VAE that asks for fp32 (force_upcast)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    time_width, projection = 8, 32
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=time_width, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * time_width + projection, cross_attention_dim=32 + 32,
        norm_num_groups=16,
    )
    scheduler = EulerDiscreteScheduler.from_config(dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, timestep_spacing="leading", interpolation_type="linear", use_karras_sigmas=False,
        prediction_type="epsilon",
    ))
    pipe = StableDiffusionXLPipeline(
        vae=_vae(4, scaling_factor=0.13025, force_upcast=True),
        text_encoder=CLIPTextModel(_clip_config(32, 32)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(32, projection)),
        tokenizer=_tokenizer(), tokenizer_2=_tokenizer(), unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_sd3(folder: Path) -> Path:
    """SD3's layout: two CLIP encoders with projections and T5, an MMDiT transformer, flow matching with
    a shift, a 16-channel-style VAE with a shift factor (here 4 channels, to stay tiny)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    t5_width = 64
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=t5_width, pooled_projection_dim=64,
        pos_embed_max_size=32,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(4, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModelWithProjection(_clip_config(32, 32)), tokenizer=_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(32, 32)), tokenizer_2=_tokenizer(),
        text_encoder_3=_t5(t5_width), tokenizer_3=_tokenizer(),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_flux(folder: Path, guidance_embeds: bool = True) -> Path:
    """Flux's layout: CLIP (pooled) and T5, a transformer of double and single blocks over 2 x 2 packed
    latents, embedded guidance (as FLUX.1-dev) unless `guidance_embeds` is off (as schnell), flow
    matching with a resolution-dependent shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    latent_channels, t5_width = 4, 32
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * latent_channels, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=t5_width, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8),
        guidance_embeds=guidance_embeds,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        transformer=transformer, scheduler=scheduler,
        vae=_vae(latent_channels, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                 use_post_quant_conv=False),
        text_encoder=CLIPTextModel(_clip_config(32, 32)), tokenizer=_tokenizer(),
        text_encoder_2=_t5(t5_width), tokenizer_2=_tokenizer(),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder




def build_lcm(folder: Path) -> Path:
    """A latent consistency model's layout (`LatentConsistencyModelPipeline`): an SD UNet that takes the guidance
    scale as an input (`time_cond_proj_dim`), LCM's scheduler config as LCM-Dreamshaper ships it."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=16, time_cond_proj_dim=32,
    )
    scheduler = LCMScheduler.from_config(dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        original_inference_steps=50, prediction_type="epsilon", set_alpha_to_one=True, steps_offset=1,
        clip_sample=False, timestep_scaling=10.0,
    ))
    pipe = LatentConsistencyModelPipeline(
        vae=_vae(4, scaling_factor=0.18215), text_encoder=CLIPTextModel(_clip_config(32, 32)), tokenizer=_tokenizer(),
        unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def with_scheduler(model, folder: Path, scheduler_class: str, **config) -> Path:
    """A copy of a loaded SD model's folder whose own scheduler is `scheduler_class` (from the model's config,
    with `config` over it): the model a user gets when the folder names that scheduler (SD-Turbo's trailing
    Euler ancestral, a Hyper-SD folder's TCD)."""
    import diffusers

    cls = getattr(diffusers, scheduler_class)
    scheduler = cls.from_config({**model.scheduler_config, **config})
    model.pipeline(scheduler).save_pretrained(folder, safe_serialization=True)
    return folder


def build_lora(model, folder: Path, seed: int = 0) -> Path:
    """A tiny LoRA for a loaded SD model's UNet (its attention projections, rank 4, random weights), saved in
    diffusers' LoRA format with peft as diffusers' training scripts save theirs."""
    import copy

    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = copy.deepcopy(model.unet)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    return folder


BUILDERS = {"sdxl": build_sdxl, "sd3": build_sd3, "flux": build_flux, "lcm": build_lcm}
