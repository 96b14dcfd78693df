"""Times sdviz against the plain diffusers pipeline, in one run, on the same model and settings.

    python benchmarks/benchmark.py                       # the embedded model, this machine
    python benchmarks/benchmark.py --sd15-random         # SD 1.5-sized components, random weights
    python benchmarks/benchmark.py --sdxl-random         # SDXL-sized (UNet, VAE, CLIP-L and CLIP-G), 1024 x 1024
    python benchmarks/benchmark.py --memory              # + attention capture memory at SD 1.5 size, 512 x 512
    python benchmarks/benchmark.py --write               # also record the table in docs/BENCHMARKS.md

Every configuration runs once per round, rounds interleaved, and the median is
reported; the plain pipeline is the model family's own (StableDiffusionPipeline,
StableDiffusionXLPipeline, ...). "taesd" previews use a random AutoencoderTiny of
taesd's size. The targets (ratios, so they hold on any machine):
    approx (every step)   <= 1.05 x plain pipeline
    full (x_t and x0 every step) <= 1.05 x (plain pipeline + the same number of stand-alone VAE decodes)
    attention capture     <= 1.25 x the same run without it
Timing does not depend on weight values, so random SD 1.5-sized weights give SD 1.5 timings.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sdviz  # noqa: E402
from sdviz.sampling.attention import AttentionCapture  # noqa: E402
from sdviz.sampling.previews import decode_full  # noqa: E402

PROMPT = "a large red circle on the left on a blue background"  # 10 words
DOC = ROOT / "docs" / "BENCHMARKS.md"


SD15_UNET = dict(  # the UNet of CompVis/stable-diffusion-v1-4 (and SD 1.5)
    sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
    attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)


def sd15_random_pipeline():
    """SD 1.5's component configs (UNet as in CompVis/stable-diffusion-v1-4, VAE, CLIP ViT-L/14 text), \
random weights."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from training.train import SD1_SCHEDULER

    unet = UNet2DConditionModel(**SD15_UNET)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407,
    ))
    tokenizer = CLIPTokenizer.from_pretrained(ROOT / "assets" / "sdviz-shapes" / "tokenizer")
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler.from_config(SD1_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


SDXL_UNET = dict(  # the UNet of stabilityai/stable-diffusion-xl-base-1.0
    sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
    attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)


def sdxl_random_pipeline():
    """SDXL base's component configs (UNet, VAE, CLIP ViT-L and OpenCLIP ViT-bigG text encoders), random weights."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    def clip(hidden: int, layers: int, heads: int, act: str, projection: int):
        return CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden,
                              num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                              hidden_act=act, bos_token_id=49406, eos_token_id=49407, projection_dim=projection)

    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=1024,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=0.13025, force_upcast=True,
    )
    tokenizer = CLIPTokenizer.from_pretrained(ROOT / "assets" / "sdviz-shapes" / "tokenizer")
    scheduler = EulerDiscreteScheduler.from_config(dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", interpolation_type="linear", prediction_type="epsilon"))
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(clip(768, 12, 12, "quick_gelu", 768)),
        text_encoder_2=CLIPTextModelWithProjection(clip(1280, 32, 20, "gelu", 1280)), tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=UNet2DConditionModel(**SDXL_UNET), scheduler=scheduler,
    )


def taesd_sized(model, folder: Path) -> None:
    """A random AutoencoderTiny of taesd's size for this model's latents, saved for the 'taesd' preview."""
    import os

    from diffusers import AutoencoderTiny

    facts = model.facts
    AutoencoderTiny(latent_channels=facts.latent_channels, scaling_factor=1.0).save_pretrained(folder)
    os.environ["SDVIZ_TAESD"] = str(folder)


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def run_benchmark(model, steps: int, rounds: int, scheduler: str | None) -> dict[str, float]:
    import tempfile

    from sdviz.sampling import schedulers

    scheduler = scheduler or model.facts.scheduler
    pipe = model.pipeline(schedulers.create(scheduler, model.scheduler_config))  # the family's own pipeline
    pipe.set_progress_bar_config(disable=True)
    taesd_sized(model, Path(tempfile.mkdtemp(prefix="taesd-sized-")))
    settings = dict(prompt=PROMPT, scheduler=scheduler, steps=steps, guidance=7.5, seed=0)
    h, w = model.facts.native_height // model.facts.vae_factor, model.facts.native_width // model.facts.vae_factor
    latents = torch.randn(1, model.facts.latent_channels, h, w, device=model.device, dtype=model.dtype)

    configs = {
        "plain pipeline": lambda: pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.5,
                                       generator=torch.Generator().manual_seed(0)),
        "one VAE decode": lambda: decode_full(model, latents),
        "sdviz approx": lambda: sdviz.generate(model, sdviz.Settings(**settings, preview="approx")),
        "sdviz taesd": lambda: sdviz.generate(model, sdviz.Settings(**settings, preview="taesd")),
        "sdviz full": lambda: sdviz.generate(model, sdviz.Settings(**settings, preview="full")),
        "sdviz approx + attention": lambda: sdviz.generate(
            model, sdviz.Settings(**settings, preview="approx"), capture=AttentionCapture(model)),
        "sdviz full + attention": lambda: sdviz.generate(
            model, sdviz.Settings(**settings, preview="full"), capture=AttentionCapture(model)),
    }
    for fn in configs.values():  # warm up
        fn()
    times: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            times[name].append(timed(configs[name], model.device))
    return {name: statistics.median(values) for name, values in times.items()}


def attention_memory(steps: int = 50) -> dict[str, float]:
    """Bytes the capture keeps per step for an SD 1.5-sized UNet at 512 x 512, guided, 10-word prompt."""
    model = sdviz.from_pipeline(sd15_random_pipeline(), "SD 1.5-sized, random weights")
    per_layer = {}
    for layered in (False, True):
        capture = AttentionCapture(model, per_layer=layered)
        run = sdviz.Run(model, sdviz.Settings(prompt=PROMPT, steps=steps, preview="approx"), capture=capture)
        for record in run:
            if record.index == 1:  # two steps measured; every step keeps the same amount
                run.stop()
        kept = capture.maps().nbytes / len(capture.maps().steps)
        per_layer[layered] = kept
    return {"per_step_bytes": per_layer[False], "per_step_bytes_per_layer": per_layer[True], "steps": steps}


def markdown(key: str, model, device, steps: int, rounds: int, medians: dict[str, float], memory=None,
             scheduler: str = "") -> str:
    plain, decode = medians["plain pipeline"], medians["one VAE decode"]
    decodes = 2 * steps  # sdviz full decodes x_t and x0 at every step (+ the noise once; the last x_t is the image)
    lines = [
        f"<!-- bench:{key} -->",
        f"### {key}",
        "",
        f"{model.facts.name}, {model.facts.native_width} x {model.facts.native_height}, "
        f"{scheduler or model.facts.scheduler} {steps} steps, "
        f"guidance 7.5, {rounds} interleaved rounds, medians. {device}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads.",
        "",
        "| run | seconds | ratio | target |",
        "|---|---|---|---|",
        f"| plain diffusers pipeline | {plain:.3f} | 1.00 | |",
        f"| one stand-alone VAE decode | {decode:.4f} | | |",
        f"| sdviz approx, every step | {medians['sdviz approx']:.3f} | "
        f"{medians['sdviz approx'] / plain:.3f} x plain | <= 1.05 |",
        f"| sdviz taesd-sized decoder, every step | {medians['sdviz taesd']:.3f} | "
        f"{medians['sdviz taesd'] / plain:.3f} x plain | |",
        f"| sdviz full (x_t + x0), every step | {medians['sdviz full']:.3f} | "
        f"{medians['sdviz full'] / (plain + decodes * decode):.3f} x (plain + {decodes} decodes) | <= 1.05 |",
        f"| sdviz approx + attention capture | {medians['sdviz approx + attention']:.3f} | "
        f"{medians['sdviz approx + attention'] / medians['sdviz approx']:.3f} x sdviz approx | <= 1.25 |",
        f"| sdviz full + attention capture | {medians['sdviz full + attention']:.3f} | "
        f"{medians['sdviz full + attention'] / medians['sdviz full']:.3f} x sdviz full | <= 1.25 |",
    ]
    if memory:
        mb = memory["per_step_bytes"] * memory["steps"] / 2**20
        mb_layers = memory["per_step_bytes_per_layer"] * memory["steps"] / 2**20
        lines += ["", f"Attention capture memory, SD 1.5-sized UNet at 512 x 512, guided, 10-word prompt, "
                      f"{memory['steps']} steps: {mb:.1f} MB per resolution (target < 250 MB); "
                      f"{mb_layers:.1f} MB with every layer's map kept as well."]
    lines += ["", f"Reproduce: `python benchmarks/benchmark.py {' '.join(sys.argv[1:])}`", f"<!-- /bench:{key} -->"]
    return "\n".join(lines)


def write_section(key: str, section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nWritten by `benchmarks/benchmark.py --write`.\n"
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)


def sized_name(args) -> str:
    return ("SD 1.5-sized, random weights" if args.sd15_random else
            "SDXL-sized, random weights" if args.sdxl_random else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="folder or hub id (default: the embedded model)")
    parser.add_argument("--sd15-random", action="store_true", help="SD 1.5-sized components with random weights")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sdxl-random", action="store_true", help="SDXL-sized components with random weights")
    parser.add_argument("--scheduler", default=None, help="default: the model's own")
    parser.add_argument("--device", default=None)
    parser.add_argument("--memory", action="store_true", help="measure attention capture memory at SD 1.5 size")
    parser.add_argument("--write", action="store_true", help=f"record the table in {DOC.relative_to(ROOT)}")
    args = parser.parse_args()

    if args.sd15_random or args.sdxl_random:
        pipe = (sd15_random_pipeline() if args.sd15_random else sdxl_random_pipeline()).to(
            sdviz.sampling.models.pick_device(args.device))
        if pipe.device.type == "cuda":  # fp16 as load_model runs GPUs; SD 1.5's VAE too (its own pipeline decodes
            pipe.to(dtype=torch.float16)  # in the UNet's dtype), SDXL's in fp32 as its config asks (force_upcast)
            if pipe.vae.config.get("force_upcast"):
                pipe.vae.to(torch.float32)
        model = sdviz.from_pipeline(pipe, sized_name(args))
    else:
        model = sdviz.load_model(args.model, device=args.device)
    device = (torch.cuda.get_device_name() if model.device.type == "cuda"
              else f"CPU ({platform.processor() or platform.machine()})")
    medians = run_benchmark(model, args.steps, args.rounds, args.scheduler)
    memory = attention_memory() if args.memory else None
    key = f"{sized_name(args) or model.facts.name} on {device}"
    section = markdown(key, model, device, args.steps, args.rounds, medians, memory, args.scheduler)
    print(section)
    if args.write:
        write_section(key, section)


if __name__ == "__main__":
    main()
