"""Trains the embedded model: a small Stable Diffusion 1.x-family pipeline on shape scenes.

Three phases, all seeded, writing a diffusers pipeline folder that
`StableDiffusionPipeline.from_pretrained(out)` loads unchanged:

1. the VAE (`AutoencoderKL`, 4 latent channels) learns to reconstruct scenes
   (L1 + MSE + a small KL term, as in latent diffusion's first stage) on random
   crops of half the image side: it is convolutional, so crops teach it the
   same edges and colours at a quarter of the cost;
2. a pool of training scenes is encoded once, and `scaling_factor` is set to
   1 / std of the latents, as Stable Diffusion's 0.18215 was chosen;
3. the text encoder (`CLIPTextModel`, trained from scratch) and the UNet
   (`UNet2DConditionModel`) learn epsilon prediction under SD 1.x's noise
   schedule, with 10 % empty prompts for classifier-free guidance; EMA weights
   are saved. The loss weights each timestep as an x0 error weighted by
   clamp(SNR, 1, 5): min-SNR-5 (Hang et al., 2023) caps the easy low-noise
   steps, and the floor of 1 (as v-prediction weights them, Salimans & Ho
   2022) keeps the high-noise steps, where the layout is decided, from
   vanishing as plain epsilon-MSE (x0 weight = SNR ~ 0.005) lets them.
   From `terminal_t` up (t >= 900, where every scheduler takes its first step
   at 10 or more sampling steps) the UNet is shown pure noise instead of the
   noised scene, with the epsilon target that makes its x0 the scene (see
   `noised`): sampling starts from pure noise, but SD 1.x's schedule leaves
   sqrt(alphas_cumprod) = 0.07-0.12 of the image in x_t there, and a model
   trained on that leak learns to take the layout from the noise and ignore
   "on the left" (Lin et al., 2024, describe the same flaw). Blind to the
   noise, it can only take the layout from the prompt. A further
   `terminal_share` of each batch is drawn from those steps.
   Matrix work runs under bf16 autocast where the hardware has native bf16
   (AVX512-BF16 CPUs, recent GPUs); weights and optimiser stay fp32.

    python -m training.build_tokenizer open_clip_torch-*.whl assets/sdviz-shapes/tokenizer
    python -m training.train --out assets/sdviz-shapes

CPU by default (2 cores: about 65 minutes); a CUDA device is used when present.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from training import scenes

# SD 1.x's noise schedule and sampler defaults (see CompVis/stable-diffusion-v1-4).
SD1_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    steps_offset=1,
    clip_sample=False,
    set_alpha_to_one=False,
    skip_prk_steps=True,
)


@dataclass
class Config:
    image_size: int = 64  # pixels; the VAE halves it twice, so latents are 16 x 16
    vae_channels: tuple[int, ...] = (32, 64, 64)  # per VAE level
    latent_channels: int = 4
    text_width: int = 32  # CLIP hidden size, also the UNet's cross_attention_dim
    text_layers: int = 2
    text_heads: int = 4
    # Per UNet level (16, 8, 4, 2 latent px): cross-attention at the first three, as SD has it at
    # 64, 32, 16 of 64, 32, 16, 8. The 2 x 2 level tells every position which quadrant it is in.
    unet_channels: tuple[int, ...] = (64, 128, 128, 128)
    unet_heads: tuple[int, ...] = (2, 4, 4, 4)  # attention heads per UNet level (head width 32)
    vae_steps: int = 2500
    vae_batch: int = 16
    vae_crop: int = 32  # side of the random crops the VAE trains on, pixels
    vae_lr: float = 2e-3
    vae_eval: int = 256  # held-out scenes the VAE's PSNR is measured on
    unet_steps: int = 3600
    unet_batch: int = 64
    unet_lr: float = 1e-3
    warmup: int = 200
    pool: int = 20000  # training scenes encoded once for the UNet phase
    uncond_prob: float = 0.1  # empty prompts, for classifier-free guidance
    min_snr_gamma: float = 5.0  # x0 weight clamp(SNR, snr_floor, min_snr_gamma)
    snr_floor: float = 1.0
    terminal_t: int = 900  # from this timestep up the UNet sees pure noise (see the docstring)
    terminal_share: float = 0.15  # share of each batch drawn from [terminal_t, 1000) on top
    ema_decay: float = 0.998
    seed: int = 0
    bf16: str = "auto"  # autocast for the UNet phase: auto (where native), on, off


def build_models(cfg: Config):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    levels = len(cfg.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=16,
        sample_size=cfg.image_size,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,  # the real CLIP vocabulary, see build_tokenizer.py
            hidden_size=cfg.text_width,
            intermediate_size=4 * cfg.text_width,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            projection_dim=cfg.text_width,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=cfg.image_size // 2 ** (levels - 1),  # latent side
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        block_out_channels=cfg.unet_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * (len(cfg.unet_channels) - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(cfg.unet_channels) - 1),
        cross_attention_dim=cfg.text_width,
        attention_head_dim=cfg.unet_heads,
        norm_num_groups=16,
    )
    return vae, text_encoder, unet


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def render_batch(rng: np.random.Generator, count: int, size: int, held_out: bool = False):
    """count scenes as float tensors in [-1, 1], (count, 3, size, size), and the scenes."""
    drawn = [scenes.sample_scene(rng, held_out) for _ in range(count)]
    images = np.stack([scenes.render(s, size)[0] for s in drawn])
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return tensor, drawn


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (mean over the batch of per-image PSNR)."""
    mse = ((a.clamp(-1, 1) - b) / 2).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


def train_vae(vae, cfg: Config, rng: np.random.Generator, device, log) -> None:
    optimiser = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    vae.train()
    for step in range(cfg.vae_steps):
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, cfg.vae_steps, cfg.vae_lr, cfg.warmup)
        images, _ = render_batch(rng, cfg.vae_batch, cfg.image_size)
        # A crop aligned to the latent grid, so every crop is a whole number of latents.
        factor = 2 ** (len(cfg.vae_channels) - 1)
        top, left = rng.integers(0, cfg.image_size - cfg.vae_crop + 1, 2) // factor * factor
        images = images[:, :, top : top + cfg.vae_crop, left : left + cfg.vae_crop].to(device)
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = (
            (recon - images).abs().mean()
            + (recon - images).pow(2).mean()
            + 1e-6 * posterior.kl().mean()
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step} loss {loss.item():.4f}")
    vae.eval()
    held_out, _ = render_batch(np.random.default_rng(cfg.seed + 1), cfg.vae_eval, cfg.image_size, held_out=True)
    with torch.no_grad():
        recon = vae.decode(vae.encode(held_out.to(device)).latent_dist.mode()).sample.cpu()
    log(f"vae held-out PSNR {psnr(recon, held_out):.2f} dB on {cfg.vae_eval} full-size scenes")


@torch.no_grad()
def encode_pool(vae, cfg: Config, rng: np.random.Generator, device):
    """Training scenes and their latent posteriors (mean, std), unscaled."""
    means, stds, drawn = [], [], []
    for start in range(0, cfg.pool, 256):
        images, batch = render_batch(rng, min(256, cfg.pool - start), cfg.image_size)
        dist = vae.encode(images.to(device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
        drawn += batch
    return torch.cat(means), torch.cat(stds), drawn


class PromptCache:
    """Token ids per prompt, padded to the tokenizer's window, computed once each."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: dict[str, torch.Tensor] = {}

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        for prompt in prompts:
            if prompt not in self.ids:
                self.ids[prompt] = self.tokenizer(
                    prompt,
                    padding="max_length",
                    max_length=self.tokenizer.model_max_length,
                    truncation=True,
                    return_tensors="pt",
                ).input_ids[0]
        return torch.stack([self.ids[p] for p in prompts])


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param, 1 - decay)


def autocast_dtype(device, choice: str):
    """bf16 where the hardware computes it natively (or when asked), else None (fp32)."""
    if choice == "off":
        return None
    if choice == "on":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if native_cpu_bf16() else None


def native_cpu_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (AVX512-BF16 or AMX). oneDNN also runs bf16 on plain AVX-512,
    emulated, and there a UNet step of the object model was several times slower than in fp32: "auto" keeps
    fp32 on such CPUs."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def noised(x0, noise, timesteps, alphas_cumprod, terminal_t: int):
    """The UNet's input x_t and epsilon target for each sample.

    Below `terminal_t`: x_t = sqrt(a) x0 + sqrt(1 - a) noise, target the noise. From
    `terminal_t` up: x_t is the noise alone (no trace of x0, as at the start of sampling),
    and the target is the epsilon that takes that x_t to x0 under the schedule.
    """
    alpha = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    blind = (timesteps >= terminal_t).view(-1, 1, 1, 1)
    x_t = torch.where(blind, noise, alpha**0.5 * x0 + (1 - alpha) ** 0.5 * noise)  # as DDPMScheduler.add_noise
    return x_t, (x_t - alpha.sqrt() * x0) / (1 - alpha).sqrt()


def denoising_step(models, emas, optimiser, token_ids, x0, generator, cfg, alphas_cumprod, loss_weight, dtype,
                   step: int) -> torch.Tensor:
    """One step of the (UNet, text encoder) pair on clean latents x0 and their prompts' token ids: noise
    drawn from `generator` (the noise-blind top of the schedule included, see `noised`), the SNR-weighted
    epsilon loss, clipped AdamW, then EMA. Returns the loss (a tensor: reading it waits for the device)."""
    unet, text_encoder = models
    device = x0.device
    noise = torch.randn(x0.shape, generator=generator).to(device)
    timesteps = torch.randint(0, len(alphas_cumprod), (len(x0),), generator=generator)
    terminal = torch.rand(len(x0), generator=generator) < cfg.terminal_share
    timesteps[terminal] = torch.randint(
        cfg.terminal_t, len(alphas_cumprod), (int(terminal.sum()),), generator=generator
    )
    timesteps = timesteps.to(device)
    x_t, target = noised(x0, noise, timesteps, alphas_cumprod, cfg.terminal_t)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        embeddings = text_encoder(token_ids)[0]
        noise_pred = unet(x_t, timesteps, embeddings).sample
    per_sample = (noise_pred.float() - target).pow(2).flatten(1).mean(1)
    loss = (per_sample * loss_weight[timesteps]).mean()
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimiser.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimiser.step()
    decay = min(cfg.ema_decay, (1 + step) / (10 + step))
    for ema, model in zip(emas, models):
        ema_update(ema, model, decay)
    return loss


def train_unet(unet, text_encoder, tokenizer, pool, cfg: Config, rng, device, log, checkpoints=None):
    from diffusers import DDPMScheduler

    means, stds, drawn, scale = pool
    noise_schedule = DDPMScheduler.from_config(SD1_SCHEDULER)
    alphas_cumprod = noise_schedule.alphas_cumprod.to(device)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    loss_weight = snr.clamp(min=cfg.snr_floor, max=cfg.min_snr_gamma) / snr  # on the epsilon MSE
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimiser = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    prompts = PromptCache(tokenizer)
    generator = torch.Generator().manual_seed(cfg.seed)
    dtype = autocast_dtype(device, cfg.bf16)
    log(f"unet phase: autocast {dtype}")
    unet.train()
    text_encoder.train()
    for step in range(cfg.unet_steps):
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, cfg.unet_steps, cfg.unet_lr, cfg.warmup)
        index = rng.integers(0, len(drawn), cfg.unet_batch)
        texts = [
            "" if rng.random() < cfg.uncond_prob else scenes.random_caption(drawn[i], rng).text
            for i in index
        ]
        x0 = means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)
        x0 = (x0 * scale).to(device)
        loss = denoising_step((unet, text_encoder), (ema_unet, ema_text), optimiser, prompts(texts).to(device), x0,
                              generator, cfg, alphas_cumprod, loss_weight, dtype, step)
        if step % 100 == 0 or step == cfg.unet_steps - 1:
            log(f"unet step {step} loss {loss.item():.4f}")
        if checkpoints and step and step % 1000 == 0:
            for name, module in (("unet", ema_unet), ("text_encoder", ema_text)):
                module.save_pretrained(checkpoints / f"step{step}" / name)
    return ema_unet, ema_text


TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae.half(),  # diffusers loads half-precision files into float32 by default
        text_encoder=text_encoder.float(),
        tokenizer=tokenizer,
        unet=unet.half(),
        scheduler=DDIMScheduler.from_config(SD1_SCHEDULER),  # its own scheduler: the one it is evaluated with
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    # The tokenizer's own files (vocab.json + merges.txt), read from the folder it was loaded from, rather than
    # the 3.6 MB tokenizer.json that transformers 5 writes in their place.
    source = Path(tokenizer.name_or_path)
    files = {name: (source / name).read_bytes() for name in TOKENIZER_FILES if (source / name).exists()}
    pipe.save_pretrained(out, safe_serialization=True)
    if all(name in files for name in TOKENIZER_FILES[:2]):
        shutil.rmtree(out / "tokenizer")
        (out / "tokenizer").mkdir()
        for name, data in files.items():
            (out / "tokenizer" / name).write_bytes(data)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("assets/sdviz-shapes"))
    parser.add_argument("--vae-steps", type=int, default=Config.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=Config.unet_steps)
    parser.add_argument("--pool", type=int, default=Config.pool)
    parser.add_argument("--vae-eval", type=int, default=Config.vae_eval, help="held-out scenes the VAE is measured on")
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default=Config.bf16)
    parser.add_argument("--checkpoints", type=Path, default=None, help="save EMA weights every 1000 UNet steps here")
    args = parser.parse_args(argv)
    cfg = Config(vae_steps=args.vae_steps, unet_steps=args.unet_steps, pool=args.pool, vae_eval=args.vae_eval,
                 seed=args.seed, bf16=args.bf16)

    from transformers import CLIPTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = CLIPTokenizer.from_pretrained(args.out / "tokenizer")
    started = time.time()
    lines: list[str] = []

    def log(message: str) -> None:
        line = f"[{time.time() - started:7.1f}s] {message}"
        lines.append(line)
        print(line, flush=True)

    vae, text_encoder, unet = (m.to(device) for m in build_models(cfg))
    log(f"device {device}, threads {torch.get_num_threads()}, config {asdict(cfg)}")
    train_vae(vae, cfg, rng, device, log)
    vae_seconds = time.time() - started
    means, stds, drawn = encode_pool(vae, cfg, rng, device)
    scale = float(1 / means.std())
    vae.register_to_config(scaling_factor=scale)
    if args.checkpoints:
        vae.save_pretrained(args.checkpoints / "vae")
    log(f"encoded {len(drawn)} scenes; latent std {means.std():.4f}, scaling_factor {scale:.5f}")
    ema_unet, ema_text = train_unet(
        unet, text_encoder, tokenizer, (means, stds, drawn, scale), cfg, rng, device, log, args.checkpoints
    )
    total = time.time() - started
    save_pipeline(args.out, vae.cpu(), ema_text.cpu(), tokenizer, ema_unet.cpu())
    record = {
        "config": asdict(cfg),
        "wall_seconds": {"vae": round(vae_seconds, 1), "total": round(total, 1)},
        "hardware": {
            "device": str(device),
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        },
        "torch": torch.__version__,
        "log": lines,
    }
    (args.out / "training_log.json").write_text(json.dumps(record, indent=1) + "\n")
    log(f"saved to {args.out} after {total / 60:.1f} min")


if __name__ == "__main__":
    main()
