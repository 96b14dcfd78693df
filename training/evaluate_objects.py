"""Evaluates the object model on held-out prompts, with diffusers' own StableDiffusionPipeline and the
analyser of `training.objects`; and its cross-attention (DAAM) on two-object prompts, with sdviz.

    python -m training.evaluate_objects --model assets/sdviz-objects [--pairs 200] [--out MODEL/eval.json]

Held-out pairs: one-object prompts whose (object, position, background) and two-object prompts whose
object pair were never drawn in training, each with its own seed; DDIM, 20 steps, guidance 7.5. Scored:
one object: object right, position right, background right; two objects: both right and each on its
side; DAAM: each object word's map (thresholded at 0.4, as DAAM segments) overlaps its own object more
than the other, and its IoU with its own object. Also: the VAE's PSNR on held-out scenes and the wall time of
one 20-step guided generation on this machine, as the model card reports them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from training import objects

BARS = {"object": 0.80, "position": 0.85, "background": 0.95, "both objects": 0.50, "daam own > other": 0.80,
        "daam iou": 0.50}
STEPS, GUIDANCE = 20, 7.5
EVAL_SEED = 123
TIMED_PROMPT = "a cat on the left and a rocket on the right on a blue background"


def held_out_prompts(count: int, seed: int = EVAL_SEED) -> list[tuple[str, int]]:
    """count (prompt, seed) pairs, half with one object and half with two, all from the held-out split."""
    rng = np.random.default_rng(seed)
    pairs = []
    for index in range(count):
        scene = objects.sample_scene(rng, held_out=True, two=index % 2 == 1)
        pairs.append((objects.caption(scene, says_size=False), int(rng.integers(2**31))))
    return pairs


def generate(pipe, pairs, batch: int = 16) -> list[np.ndarray]:
    import torch

    images = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start:start + batch]
        out = pipe([p for p, _ in chunk], num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="np",
                   generator=[torch.Generator().manual_seed(s) for _, s in chunk]).images
        images += [(image * 255).round().astype(np.uint8) for image in out]
    return images


def score(pairs, images) -> dict[str, list[bool]]:
    results: dict[str, list[bool]] = {}
    for (prompt, _), image in zip(pairs, images):
        for key, value in objects.scores(image, prompt).items():
            results.setdefault(key, []).append(bool(value))
    return results


def daam(model, pairs) -> dict[str, list]:
    """Per two-object prompt: whether each object word's map overlaps its own object more than the other,
    and the IoU with its own object (objects found by the analyser in the run's final image)."""
    import sdviz
    from sdviz.sampling.attention import DAAM_THRESHOLD, AttentionCapture

    own_more, ious = [], []
    for prompt, seed in pairs:
        stated = objects.parse_prompt(prompt)
        if len(stated["objects"]) != 2:
            continue
        settings = sdviz.Settings(prompt=prompt, scheduler="ddim", steps=STEPS, guidance=GUIDANCE, seed=seed,
                                  preview="approx")  # the maps and the final image do not depend on the previews
        traj = sdviz.generate(model, settings, capture=AttentionCapture(model))
        found = objects.analyse(traj.final_image, stated)["found"]
        if any(f is None for f in found):
            continue
        masks = [f.mask for f in found]
        for (name, _), mine, other in ((stated["objects"][0], masks[0], masks[1]),
                                       (stated["objects"][1], masks[1], masks[0])):
            segment = traj.attention.word_heat_map(name) >= DAAM_THRESHOLD
            overlap_own, overlap_other = (segment & mine).sum(), (segment & other).sum()
            own_more.append(bool(overlap_own > overlap_other))
            ious.append(float((segment & mine).sum() / max((segment | mine).sum(), 1)))
    return {"daam own > other": own_more, "daam iou": ious}


VAE_SCENES = 128  # held-out scenes the VAE's PSNR is measured on


def vae_psnr(pipe, count: int = VAE_SCENES) -> float:
    """Mean PSNR (dB) of the VAE's reconstructions of held-out scenes at the model's own size."""
    import torch

    from training.evaluate import reconstruction_psnr

    rng = np.random.default_rng([EVAL_SEED, 1])
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    drawn = [objects.sample_scene(rng, held_out=True) for _ in range(count)]
    images = torch.from_numpy(np.stack([objects.render(scene, size)[0] for scene in drawn])).permute(0, 3, 1, 2)
    return reconstruction_psnr(pipe.vae, images)


def evaluate(model_folder: str, count: int) -> dict:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    import sdviz
    from training.evaluate import generation_seconds

    started = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(model_folder, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():  # not set_grad_enabled: a caller that trains afterwards keeps its gradients
        pairs = held_out_prompts(count)
        results = score(pairs, generate(pipe, pairs))
        results.update(daam(sdviz.load_model(model_folder), pairs))
        rates = {key: float(np.mean(values)) if values else 0.0 for key, values in results.items()}
        return {"pairs": count, "counts": {key: len(values) for key, values in results.items()}, "rates": rates,
                "bars": BARS, "passed": {key: rates.get(key, 0.0) >= bar for key, bar in BARS.items()},
                "vae_psnr_db": vae_psnr(pipe), "vae_scenes": VAE_SCENES,
                "generation_seconds_20_steps": generation_seconds(pipe, prompt=TIMED_PROMPT),
                "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                "eval_seconds": round(time.perf_counter() - started, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="assets/sdviz-objects")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON report (default: MODEL/eval.json)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = evaluate(args.model, args.pairs)
    for key, rate in report["rates"].items():
        bar = BARS.get(key)
        print(f"{key:20} {rate:6.1%} of {report['counts'][key]}" + (f"  (bar {bar:.0%})" if bar else ""))
    print(f"{'VAE PSNR':20} {report['vae_psnr_db']:.2f} dB")
    print(f"{'20 guided steps':20} {report['generation_seconds_20_steps']:.3f} s on {report['threads']} threads")
    out = args.out or Path(args.model) / "eval.json"
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
