"""Evaluates the embedded model on held-out prompts, as its model card reports.

    python -m training.evaluate [--model assets/sdviz-shapes] [--pairs 200] [--daam 50]

Generation: diffusers' StableDiffusionPipeline, DDIM, 20 steps, guidance 7.5,
one seed per prompt, on scenes whose attribute combination was never drawn in
training. Each image is read back by `scenes.analyse`; a prompt's colour,
shape, position and background are scored where the prompt states them.
DAAM: each prompt's shape word's whole-run cross-attention map, normalised
and thresholded at 0.4, against the shape the analyser finds in the image
(mean IoU). VAE: PSNR of reconstructions of held-out scenes. Speed: wall time
of one 20-step guided generation on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from training import scenes

EVAL_SEED = 1234
STEPS, GUIDANCE = 20, 7.5
ATTRIBUTES = ("colour", "shape", "position", "background")


class EvalPair(NamedTuple):
    prompt: str
    seed: int
    combo: tuple[str, str, str, str, str]  # the held-out (colour, shape, size, position, background)


def held_out_pairs(count: int) -> list[EvalPair]:
    """Prompt/seed pairs on held-out attribute combinations; fixed, independent of training."""
    rng = np.random.default_rng(EVAL_SEED)
    combos = [c for c in scenes.all_combos() if scenes.is_held_out(c)]
    order = rng.permutation(len(combos))
    pairs = []
    for n in range(count):
        scene = scenes.make_scene(combos[order[n % len(combos)]], rng)
        text = scenes.caption(scene, says_size=bool(rng.random() < 0.5)).text
        pairs.append(EvalPair(text, 10_000 + n, scene.combo))
    return pairs


def ddim_pipeline(model_path: str):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_path)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def score_images(pairs, images) -> dict[str, list[bool]]:
    results: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    for pair, image in zip(pairs, images):
        matches = scenes.analyse(image).matches(scenes.parse_prompt(pair.prompt))
        for attribute in ATTRIBUTES:
            if attribute in matches:
                results[attribute].append(matches[attribute])
    return results


def generate(pipe, pairs, batch: int = 25) -> list[np.ndarray]:
    images = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        out = pipe(
            [pair.prompt for pair in chunk],
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            generator=[torch.Generator().manual_seed(pair.seed) for pair in chunk],
            output_type="np",
        ).images
        images += [(im * 255).round().astype(np.uint8) for im in out]
    return images


def daam_ious(model_path: str, pairs, resolutions=("all",)) -> dict[str, list[float]]:
    """IoU of each prompt's thresholded shape-word map with the analysed shape.

    One list per entry of `resolutions`: 'all' is DAAM's sum over every layer, a grid
    key such as '16x16' that resolution's layers alone ('finest': the latent grid's).
    """
    import sdviz
    from sdviz.sampling.attention import DAAM_THRESHOLD, AttentionCapture

    model = sdviz.load_model(model_path)
    ious: dict[str, list[float]] = {resolution: [] for resolution in resolutions}
    for prompt, seed, _ in pairs:
        capture = AttentionCapture(model)
        traj = sdviz.generate(
            model, sdviz.Settings(prompt=prompt, scheduler="ddim", steps=STEPS, guidance=GUIDANCE, seed=seed,
                                  preview="approx"),  # the maps and the final image do not depend on the previews
            capture=capture,
        )
        shape = scenes.parse_prompt(prompt)["shape"]
        drawn = scenes.analyse(traj.final_image).mask
        for resolution in resolutions:
            key = traj.attention.resolutions[0] if resolution == "finest" else resolution
            heat = traj.attention.word_heat_map(shape, resolution=key)
            ious[resolution].append(scenes.iou(heat > DAAM_THRESHOLD, drawn))
    return ious


def vae_psnr(pipe, count: int = 256) -> float:
    rng = np.random.default_rng(EVAL_SEED + 1)
    drawn = [scenes.sample_scene(rng, held_out=True) for _ in range(count)]
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images = torch.from_numpy(np.stack([scenes.render(s, size)[0] for s in drawn])).permute(0, 3, 1, 2)
    return reconstruction_psnr(pipe.vae, images)


def reconstruction_psnr(vae, images) -> float:
    """Mean PSNR (dB) of the VAE's reconstructions of uint8 images, (N, 3, H, W)."""
    images = images.float() / 127.5 - 1
    with torch.no_grad():
        recon = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
    mse = ((recon - images) / 2).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse)).mean())


def generation_seconds(pipe, repeats: int = 5, prompt: str = "a red circle on the left") -> float:
    times = []
    for n in range(repeats + 1):
        started = time.perf_counter()
        pipe(prompt, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
             generator=torch.Generator().manual_seed(n))
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])  # the first run warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="assets/sdviz-shapes")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--daam", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: MODEL/eval.json)")
    args = parser.parse_args()

    pipe = ddim_pipeline(args.model)
    pairs = held_out_pairs(args.pairs)
    started = time.perf_counter()
    results = score_images(pairs, generate(pipe, pairs))
    accuracy = {a: float(np.mean(v)) for a, v in results.items()}
    ious = daam_ious(args.model, pairs[: args.daam], resolutions=("all", "finest"))
    report = {
        "pairs": len(pairs),
        "accuracy": accuracy,
        "scored": {a: len(v) for a, v in results.items()},
        "daam_miou": float(np.mean(ious["all"])),
        "daam_miou_finest_resolution": float(np.mean(ious["finest"])),
        "daam_prompts": len(ious["all"]),
        "vae_psnr_db": vae_psnr(pipe),
        "generation_seconds_20_steps": generation_seconds(pipe),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "eval_seconds": time.perf_counter() - started,
    }
    out = args.out or Path(args.model) / "eval.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    for attribute, value in accuracy.items():
        print(f"{attribute:10s} {value * 100:5.1f} %  ({report['scored'][attribute]} prompts)")
    print(f"DAAM mIoU  {report['daam_miou']:.3f}  ({report['daam_prompts']} prompts; "
          f"finest resolution alone {report['daam_miou_finest_resolution']:.3f})")
    print(f"VAE PSNR   {report['vae_psnr_db']:.2f} dB")
    print(f"20-step DDIM with guidance: {report['generation_seconds_20_steps']:.3f} s")


if __name__ == "__main__":
    main()
