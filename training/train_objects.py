"""Trains the object model: a Stable Diffusion 1.x-family pipeline that draws emoji objects where words say.

    python -m training.train_objects --out assets/sdviz-objects --state runs/objects-state
    python -m training.train_objects --out assets/sdviz-objects --state runs/objects-state   # again: resumes

The phases are those of `training.train` (the shapes model): the VAE, the scaling factor from a pool of
encoded scenes, then the text encoder and the UNet together with EMA, the SNR-clamped loss and the
noise-blind top of the schedule. The scenes are `training.objects`' (one object, or two at opposite
positions, on a flat background), at 64 x 64 pixels through a VAE of factor 4 (16 x 16 latents): the
emoji stay recognisable at that size (the analyser reads them all), the UNet sees the latent grid SD's
sees at 128 px, and a 2-core CPU trains it in hours (resumed across sessions). `--image-size 128
--vae-channels 32,64,128,128` gives the 128-pixel, factor-8 variant for a GPU.

Resumable: every `--save-every` steps, and at the end of each phase, the whole state goes to `--state`:
the weights, the EMA weights, the optimiser, the step and the pool's seed. Run the same command again
and it continues where the state ends; each step's batch is drawn from a generator seeded with
(seed, phase, step), so a resumed run draws what an uninterrupted one would. A CUDA device is used
when present (bf16 autocast where native).

Carried: the whole state of the UNet phase is several times the model's size, too big to move between
machines often. `--carry FILE` also writes, at every save, a compact copy: the VAE in float32 (the pool
and the scaling factor are encoded from it), the UNet and text encoder in float16, the steps, the time
and the log; no optimiser and no EMA. A run whose `--state` holds nothing starts from `--carry` when the
file exists: the EMA restarts from the weights, the optimiser afresh, its learning rate ramped up again
over `REWARM` steps. The batches are still those of (seed, phase, step); the weights differ from an
uninterrupted run's by the float16 rounding and the new optimiser, which the log records.

Checked halfway: `--snapshot DIR` writes the model as the state stands (its EMA weights) and trains nothing;
`python -m training.evaluate_objects --model DIR` then scores it. `--stop-at-step N` stops the run at UNet
step N of its schedule (saved, resumable), so a model taken halfway is reproduced by that command and a
snapshot.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from training import objects
from training.train import SD1_SCHEDULER, PromptCache, autocast_dtype, denoising_step, lr_at, psnr, save_pipeline


@dataclass
class Config:
    image_size: int = 64
    vae_channels: tuple[int, ...] = (32, 64, 128)  # three levels: factor 4, 16 x 16 latents
    latent_channels: int = 8  # 8 channels keep the glyphs: 28.4 dB against 25.8 dB with 4 at VAE step 2500
    text_width: int = 64
    text_layers: int = 3
    text_heads: int = 4
    unet_channels: tuple[int, ...] = (64, 128, 192)  # latent 16, 8, 4; cross-attention at the first two and the middle
    unet_heads: tuple[int, ...] = (2, 4, 6)  # head width 32
    vae_steps: int = 5000
    vae_batch: int = 16
    vae_crop: int = 32  # the VAE is convolutional: crops teach it every part of a glyph
    vae_lr: float = 1e-3
    vae_eval: int = 128  # held-out scenes the VAE's PSNR is measured on
    unet_steps: int = 16000
    unet_batch: int = 64
    unet_lr: float = 1e-3
    warmup: int = 500
    pool: int = 60000  # scenes encoded once for the UNet phase
    uncond_prob: float = 0.1
    min_snr_gamma: float = 5.0
    snr_floor: float = 1.0
    terminal_t: int = 900
    terminal_share: float = 0.15
    ema_decay: float = 0.999
    seed: int = 0
    bf16: str = "auto"


def build_models(cfg: Config):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    levels = len(cfg.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=cfg.vae_channels, layers_per_block=1,
        latent_channels=cfg.latent_channels, norm_num_groups=16, sample_size=cfg.image_size,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads, max_position_embeddings=77,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=cfg.text_width,
    ))
    crossed = len(cfg.unet_channels) - 1
    unet = UNet2DConditionModel(
        sample_size=cfg.image_size // 2 ** (levels - 1), in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels, block_out_channels=cfg.unet_channels, layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * crossed + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * crossed,
        cross_attention_dim=cfg.text_width, attention_head_dim=cfg.unet_heads, norm_num_groups=16,
    )
    return vae, text_encoder, unet


def step_rng(cfg: Config, phase: int, step: int) -> np.random.Generator:
    """The batch of one step, the same whether the run was resumed or not."""
    return np.random.default_rng([cfg.seed, phase, step])


def render_batch(rng: np.random.Generator, count: int, size: int, held_out: bool = False):
    """count scenes as float tensors in [-1, 1], (count, 3, size, size), and the scenes."""
    drawn = [objects.sample_scene(rng, held_out) for _ in range(count)]
    images = np.stack([objects.render(scene, size)[0] for scene in drawn])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1, drawn


REWARM = 200  # steps over which a run resumed from a carry ramps its learning rate up again (a fresh optimiser)


def carried_lr(state: State, phase: str, step: int, lr: float) -> float:
    """The learning rate at `step`, ramped up again after a resume from a carry (see REWARM)."""
    start = state.data.get("carried", {}).get(phase)
    return lr if start is None else lr * min(1.0, (step - start + 1) / REWARM)


class Stopped(Exception):
    """The time given (--stop-after) is up, or the step (--stop-at-step) reached: the state is saved, the
    same command without the stop resumes."""


class State:
    """The training state in one file, state.pt: step counters, weights, EMA weights, optimisers, the log
    and the seconds spent so far. `save` also checks the time given to this process."""

    def __init__(self, folder: Path | None, save_every: int = 1000, stop_after: float | None = None,
                 carry: Path | None = None, stop_at_step: int | None = None):
        self.folder, self.save_every, self.stop_after, self.carry = folder, save_every, stop_after, carry
        self.stop_at_step = stop_at_step
        path = folder / "state.pt" if folder else None
        if path and path.exists():
            self.data = torch.load(path, weights_only=False)
        elif carry is not None and carry.exists():
            self.data = self.from_carry(torch.load(carry, weights_only=False))
        else:
            self.data = {"vae_step": 0, "unet_step": 0, "seconds": 0.0, "log": []}
        self.started = time.time()
        self.spent_before = self.data["seconds"]

    @staticmethod
    def from_carry(carried: dict) -> dict:
        """A state from a carry: the EMA restarts from the weights; no optimiser (see REWARM)."""
        data = {key: value for key, value in carried.items() if key != "weights"}
        weights = carried["weights"]
        data["carried"] = {phase: data[f"{phase}_step"] for phase in ("vae", "unet") if data[f"{phase}_step"] > 0}
        if "vae" in weights:
            data["vae"] = weights["vae"]
        if "unet" in weights:
            data.update(unet=weights["unet"], text_encoder=weights["text_encoder"], ema_unet=weights["unet"],
                        ema_text=weights["text_encoder"])
        data["log"] = [*data["log"], f"[carried] resumed from a carry at vae step {data['vae_step']}, unet step "
                       f"{data['unet_step']}: EMA from the weights, a fresh optimiser, {REWARM} steps of re-warm-up"]
        return data

    def write_carry(self) -> None:
        """The compact copy (see the module's docstring), written whole or not at all."""
        half = {"unet": torch.float16, "text_encoder": torch.float16, "vae": torch.float32}
        weights = {key: {name: tensor.to(dtype) for name, tensor in self.data[key].items()}
                   for key, dtype in half.items() if key in self.data}
        kept = ("config", "vae_step", "unet_step", "seconds", "log", "scaling_factor")
        carried = {key: self.data[key] for key in kept if key in self.data}
        self.carry.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.carry.with_name(self.carry.name + ".tmp")
        torch.save({**carried, "weights": weights}, temporary)
        temporary.replace(self.carry)

    def seconds(self) -> float:
        return self.spent_before + time.time() - self.started

    def due(self, step: int, last: int) -> bool:
        return (step + 1) % self.save_every == 0 or step == last or self.out_of_time()

    def out_of_time(self) -> bool:
        return self.stop_after is not None and time.time() - self.started > self.stop_after

    def save(self, **entries) -> None:
        """Writes the state (a kill mid-write leaves the last whole one); raises Stopped when time is up."""
        self.data.update(entries, seconds=self.seconds())
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = self.folder / "state.pt.tmp"
            torch.save(self.data, temporary)
            temporary.replace(self.folder / "state.pt")
        if self.carry is not None:
            self.write_carry()
        if self.out_of_time():
            raise Stopped(f"stopped after {self.seconds() / 60:.1f} min in all; run the same command to resume")


def train_vae(vae, cfg: Config, state: State, device, log) -> None:
    optimiser = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    if "vae" in state.data:
        vae.load_state_dict(state.data["vae"])
        if "vae_optimiser" in state.data:  # not after a carry
            optimiser.load_state_dict(state.data["vae_optimiser"])
        log(f"vae resumed at step {state.data['vae_step']}")
    factor = 2 ** (len(cfg.vae_channels) - 1)
    vae.train()
    for step in range(state.data["vae_step"], cfg.vae_steps):
        rng = step_rng(cfg, 1, step)
        for group in optimiser.param_groups:
            group["lr"] = carried_lr(state, "vae", step, lr_at(step, cfg.vae_steps, cfg.vae_lr, cfg.warmup))
        images, _ = render_batch(rng, cfg.vae_batch, cfg.image_size)
        top, left = rng.integers(0, cfg.image_size - cfg.vae_crop + 1, 2) // factor * factor
        images = images[:, :, top:top + cfg.vae_crop, left:left + cfg.vae_crop].to(device)
        posterior = vae.encode(images).latent_dist
        sample = posterior.sample(torch.Generator().manual_seed(int(rng.integers(2**62))))
        recon = vae.decode(sample).sample
        loss = (recon - images).abs().mean() + (recon - images).pow(2).mean() + 1e-6 * posterior.kl().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 200 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step} loss {loss.item():.4f}")
        if state.due(step, cfg.vae_steps - 1):
            state.save(vae=vae.state_dict(), vae_optimiser=optimiser.state_dict(), vae_step=step + 1)
    vae.eval()
    held_out, _ = render_batch(np.random.default_rng([cfg.seed, 9]), cfg.vae_eval, cfg.image_size, held_out=True)
    with torch.no_grad():
        recon = vae.decode(vae.encode(held_out.to(device)).latent_dist.mode()).sample.cpu()
    log(f"vae held-out PSNR {psnr(recon, held_out):.2f} dB on {cfg.vae_eval} full-size scenes")


@torch.no_grad()
def encode_pool(vae, cfg: Config, device):
    """The pool of training scenes (drawn from its own seeded generator) and their latent posteriors."""
    rng = np.random.default_rng([cfg.seed, 2])
    means, stds, drawn = [], [], []
    for start in range(0, cfg.pool, 256):
        images, batch = render_batch(rng, min(256, cfg.pool - start), cfg.image_size)
        dist = vae.encode(images.to(device)).latent_dist
        means.append(dist.mean.cpu().half())
        stds.append(dist.std.cpu().half())
        drawn += batch
    return torch.cat(means), torch.cat(stds), drawn


CALIBRATION = (5, 25)  # UNet steps timed to fit a time budget: after the first kernels, inside the warm-up


def train_unet(unet, text_encoder, tokenizer, pool, cfg: Config, state: State, device, log, budget=None):
    """budget: seconds for the whole phase; the step count is then set from the rate of steps CALIBRATION
    (the learning rate of the steps before depends on the warm-up alone, so --unet-steps with the count
    the log records reproduces the run)."""
    from diffusers import DDPMScheduler

    started = time.perf_counter()
    if budget is not None and cfg.warmup < CALIBRATION[1]:
        raise ValueError(f"--unet-seconds needs a warm-up of at least {CALIBRATION[1]} steps; it is {cfg.warmup}")

    means, stds, drawn, scale = pool
    alphas_cumprod = DDPMScheduler.from_config(SD1_SCHEDULER).alphas_cumprod.to(device)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    loss_weight = snr.clamp(min=cfg.snr_floor, max=cfg.min_snr_gamma) / snr
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimiser = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    if "unet" in state.data:
        for module, key in ((unet, "unet"), (text_encoder, "text_encoder"), (ema_unet, "ema_unet"),
                            (ema_text, "ema_text"), (optimiser, "unet_optimiser")):
            if key in state.data:  # no optimiser after a carry
                module.load_state_dict(state.data[key])
        log(f"unet resumed at step {state.data['unet_step']}")
    prompts = PromptCache(tokenizer)
    dtype = autocast_dtype(device, cfg.bf16)
    log(f"unet phase: autocast {dtype}")
    unet.to(memory_format=torch.channels_last)  # its convolutions ran ~15 % faster on a 2-core CPU
    unet.train()
    text_encoder.train()
    step, timer = state.data["unet_step"], None
    if state.stop_at_step is not None and not 0 < state.stop_at_step <= cfg.unet_steps:
        raise SystemExit(f"--stop-at-step {state.stop_at_step}: the UNet phase has steps 1 to {cfg.unet_steps}")
    if state.stop_at_step is not None and step > state.stop_at_step:
        raise SystemExit(f"--stop-at-step {state.stop_at_step}: the state is already at unet step {step}")
    while step < cfg.unet_steps and step != state.stop_at_step:
        if budget is not None and step in CALIBRATION:
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step == CALIBRATION[0]:
                timer = time.perf_counter()
            elif timer is not None:
                rate = (CALIBRATION[1] - CALIBRATION[0]) / (time.perf_counter() - timer)
                left = budget - (time.perf_counter() - started)
                cfg.unet_steps = min(cfg.unet_steps, step + max(int(rate * left), 1))
                state.data["config"]["unet_steps"] = cfg.unet_steps
                log(f"unet: {rate:.1f} steps/s, {cfg.unet_steps} steps fit the {budget:g} s budget")
        rng = step_rng(cfg, 3, step)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for group in optimiser.param_groups:
            group["lr"] = carried_lr(state, "unet", step, lr_at(step, cfg.unet_steps, cfg.unet_lr, cfg.warmup))
        index = rng.integers(0, len(drawn), cfg.unet_batch)
        texts = ["" if rng.random() < cfg.uncond_prob else objects.random_caption(drawn[i], rng) for i in index]
        x0 = means[index].float() + stds[index].float() * torch.randn(means[index].shape, generator=generator)
        x0 = (x0 * scale).to(device)
        loss = denoising_step((unet, text_encoder), (ema_unet, ema_text), optimiser, prompts(texts).to(device), x0,
                              generator, cfg, alphas_cumprod, loss_weight, dtype, step)
        if step % 200 == 0 or step == cfg.unet_steps - 1:
            log(f"unet step {step} loss {loss.item():.4f}")
        if state.due(step, cfg.unet_steps - 1) or step + 1 == state.stop_at_step:
            state.save(unet=unet.state_dict(), text_encoder=text_encoder.state_dict(),
                       ema_unet=ema_unet.state_dict(), ema_text=ema_text.state_dict(),
                       unet_optimiser=optimiser.state_dict(), unet_step=step + 1)
        step += 1
    if step < cfg.unet_steps:
        raise Stopped(f"stopped at unet step {step} of {cfg.unet_steps} (--stop-at-step); run without it to go on")
    return ema_unet, ema_text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("assets/sdviz-objects"))
    parser.add_argument("--state", type=Path, default=None, help="resumable state (written as it goes, read first)")
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--carry", type=Path, default=None,
                        help="also write a compact copy of the state here at every save (float16 weights, no "
                             "optimiser), and start from it when --state holds nothing")
    parser.add_argument("--tokenizer", type=Path, default=Path("assets/sdviz-shapes/tokenizer"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--stop-after", type=float, default=None, metavar="SECONDS",
                        help="save the state and stop after this long (resume later with the same command)")
    parser.add_argument("--stop-at-step", type=int, default=None, metavar="N",
                        help="save the state and stop when the UNet phase reaches step N of its schedule")
    parser.add_argument("--snapshot", type=Path, default=None, metavar="DIR",
                        help="write the model as the state stands (EMA weights) to DIR and stop; nothing is trained")
    parser.add_argument("--unet-seconds", type=float, default=None,
                        help="fit the UNet phase into this many seconds: the step count (at most --unet-steps) is "
                             "set from the rate of its first steps and logged; --unet-steps with it reproduces it")
    for name, value in asdict(Config()).items():
        if isinstance(value, tuple):  # channels and heads per level: comma-separated
            parser.add_argument(f"--{name.replace('_', '-')}", type=lambda text: tuple(int(v) for v in text.split(",")),
                                default=value, metavar="N,N,...")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and name != "seed":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default=Config.bf16)
    args = parser.parse_args(argv)
    cfg = Config(**{name: getattr(args, name) for name in asdict(Config()) if hasattr(args, name)})

    from transformers import CLIPTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = CLIPTokenizer.from_pretrained(args.tokenizer)
    state = State(args.state, args.save_every, args.stop_after, args.carry, args.stop_at_step)
    config = json.loads(json.dumps(asdict(cfg)))
    if state.data.setdefault("config", config) != config:
        raise SystemExit(f"--state {args.state} holds a run with another config: {state.data['config']}")
    lines: list[str] = state.data["log"]

    def log(message: str) -> None:
        line = f"[{state.seconds():8.1f}s] {message}"
        lines.append(line)
        print(line, flush=True)

    vae, text_encoder, unet = (m.to(device) for m in build_models(cfg))
    log(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor()}), "
        f"threads {torch.get_num_threads()}")
    if args.snapshot is not None:
        write_snapshot(args.snapshot, state, cfg, (vae, text_encoder, unet), tokenizer, device, log)
        return
    try:
        train_vae(vae, cfg, state, device, log)
        means, stds, drawn = encode_pool(vae, cfg, device)
        scale = scaling_factor(means)
        vae.register_to_config(scaling_factor=scale)
        state.data["scaling_factor"] = scale  # for --snapshot
        log(f"encoded {len(drawn)} scenes; scaling_factor {scale:.5f}")
        ema_unet, ema_text = train_unet(unet, text_encoder, tokenizer, (means, stds, drawn, scale), cfg, state,
                                        device, log, args.unet_seconds)
    except Stopped as stopped:
        print(stopped, flush=True)
        return
    write_model(args.out, state, cfg, (vae, ema_text, ema_unet), tokenizer, device)
    log(f"saved to {args.out} after {state.seconds() / 60:.1f} min")


def scaling_factor(means) -> float:
    """1 / std of the encoded pool's latent means, as SD's 0.18215 was chosen."""
    return float(1 / means.float().std())


SNAPSHOT_POOL = 4096  # scenes the scaling factor is measured on for a snapshot of a state that lacks it


def write_snapshot(out: Path, state: State, cfg: Config, models, tokenizer, device, log) -> None:
    """The model as the run stands (its EMA weights), written as the finished one is, to check a long run
    halfway: `python -m training.evaluate_objects --model OUT`. The scaling factor is the state's, or, in a
    state saved before it was kept, measured on the pool's first SNAPSHOT_POOL scenes."""
    vae, text_encoder, unet = models
    if "ema_unet" not in state.data:
        raise SystemExit("--snapshot: the state holds no UNet yet")
    vae.load_state_dict(state.data["vae"])
    unet.load_state_dict(state.data["ema_unet"])
    text_encoder.load_state_dict(state.data["ema_text"])
    vae.eval()
    scale = state.data.get("scaling_factor")
    if scale is None:
        scale = scaling_factor(encode_pool(vae, Config(**{**asdict(cfg), "pool": SNAPSHOT_POOL}), device)[0])
        log(f"snapshot: scaling_factor {scale:.5f} from the pool's first {SNAPSHOT_POOL} scenes")
    vae.register_to_config(scaling_factor=scale)
    log(f"snapshot at unet step {state.data['unet_step']}, written to {out}")
    write_model(out, state, cfg, (vae, text_encoder, unet), tokenizer, device)


def write_model(out: Path, state: State, cfg: Config, models, tokenizer, device) -> None:
    """The pipeline folder, its scenes.json and training_log.json (config, wall time, hardware, the log)."""
    from training.model_card import cpu_name

    vae, text_encoder, unet = models
    out.mkdir(parents=True, exist_ok=True)
    save_pipeline(out, vae.cpu(), text_encoder.cpu(), tokenizer, unet.cpu())
    (out / "scenes.json").write_text(json.dumps(objects.scenes_json(), indent=1) + "\n")
    record = {"config": asdict(cfg), "unet_step": state.data["unet_step"], "wall_seconds": round(state.seconds(), 1),
              "hardware": {"device": str(device), "cpu": platform.processor() or platform.machine(),
                           "cpu_name": cpu_name(),
                           "threads": torch.get_num_threads(),
                           "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None},
              "torch": torch.__version__, "log": state.data["log"]}
    (out / "training_log.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
