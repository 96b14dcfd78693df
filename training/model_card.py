"""Writes an embedded model's card (MODEL/README.md) from what training and evaluation recorded.

    python -m training.model_card [--model assets/sdviz-shapes]
    python -m training.model_card --model assets/sdviz-objects

Every figure comes from the model folder itself: `training_log.json` (written by
`training.train` or `training.train_objects`), `eval.json` (by `training.evaluate` or
`training.evaluate_objects`), the configs and the weights (parameter counts, file sizes),
so the card cannot drift from the model. A folder with a `scenes.json` is the object model.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from training import objects, scenes

METADATA = """\
---
license: mit
library_name: diffusers
pipeline_tag: text-to-image
tags: [stable-diffusion, toy-model, education]
widget:
"""  # then the example prompts the page offers, one `- text:` each

TEMPLATE = METADATA + """\
- text: a large red circle on the left on a blue background
- text: a small yellow triangle at the top on a purple background
- text: a green square in the center on a white background
- text: a large white circle at the bottom on a black background
---

# sdviz-shapes: a Stable Diffusion 1.x-family model small enough to watch on a CPU

The default model of [sdviz](../../README.md). It has every part of Stable Diffusion
1.x, in diffusers format, trained from scratch by this project on procedurally drawn
scenes: one shape on a flat background. It turns noise into a recognisable picture in
{gen_seconds:.2f} s on a 2-core CPU (20 DDIM steps with guidance), so every step can
be decoded and shown, and its content can be checked automatically.

```python
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained("assets/sdviz-shapes")
image = pipe("a large red circle on the left on a blue background", num_inference_steps=20).images[0]
```

## Data and grammar

Scenes are drawn by `training/scenes.py` (anti-aliased, 4x supersampled), {size} x {size}
pixels, with the exact mask of the shape kept for evaluation. Prompts follow

    a [small|large] <colour> <shape> [on the left|on the right|at the top|at the bottom|in the center] [on a <colour> background]

with colours {colours}, shapes {shapes}, sizes {sizes} and positions {positions}
(the centre jittered by up to {jitter:.0%} of the side). Shape and background colours
differ. During training the size phrase is kept {keep_size:.0%} of the time, the position
phrase {keep_pos:.0%} and the background phrase {keep_bg:.0%}, and {uncond:.0%} of prompts are empty (for
classifier-free guidance). {held_out}% of the {combos} (colour, shape, size, position,
background) combinations are never drawn for training; the evaluation uses only those.
Two-object prompts are not part of the grammar.

## Architecture

| component | diffusers / transformers class | configuration | parameters |
|---|---|---|---|
| tokenizer | `CLIPTokenizer` | the real CLIP BPE vocabulary (49408 tokens, 77 positions), from `open_clip_torch`'s `bpe_simple_vocab_16e6.txt.gz` | - |
| text encoder | `CLIPTextModel` | width {text_width}, {text_layers} layers, {text_heads} heads: token embeddings {tokens} x {text_width} | {p_text} |
| UNet | `UNet2DConditionModel` | channels {unet_channels}, latents {latent_channels} x {latent} x {latent}, cross-attention at {cross_res} | {p_unet} |
| VAE | `AutoencoderKL` | channels {vae_channels}, factor {factor}, {latent_channels} latent channels, scaling factor {scaling:.5f} | {p_vae} |
| scheduler | `DDIMScheduler` with the SD 1.x config (its default in sdviz and in its evaluation) | scaled_linear betas 0.00085 to 0.012, 1000 steps, epsilon prediction, steps_offset 1 | - |

{p_total} parameters in all; the UNet and VAE are stored in float16 and the text encoder
in float32, as safetensors only: {megabytes:.1f} MB on disk. No safety checker.

## Training

`python -m training.train --out assets/sdviz-shapes` (after `python -m training.build_tokenizer`;
both seeded, seed {seed}) reproduces these weights:

1. VAE: {vae_steps} steps, batch {vae_batch}, random {vae_crop} x {vae_crop} crops, L1 + MSE + a small KL term.
2. {pool} training scenes encoded once; `scaling_factor` = 1 / std of their latents.
3. Text encoder and UNet together: {unet_steps} steps, batch {unet_batch}, AdamW at {unet_lr:g}
   (warm-up {warmup} steps, then cosine decay to a tenth), epsilon prediction under SD 1.x's noise schedule,
   each timestep weighted as an x0 error by clamp(SNR, {snr_floor:g}, {gamma:g}), EMA {ema:g}.
   From t = {terminal_t} up (every scheduler's first step at 10 or more steps) the UNet sees pure noise
   instead of the noised scene (with the epsilon target that makes its x0 the scene), and
   {terminal_share:.0f} % of each batch is drawn from those steps on top of the uniform draw. SD 1.x's
   schedule leaves 7-12 % of the image in x_t there, while sampling starts from pure noise: a
   model trained on that leak takes the layout from the noise and ignores the position words
   (the flaw Lin et al., 2024, describe for brightness). Blind to the noise, it must take the
   layout from the prompt: an otherwise identical recipe without this put the shape where
   the prompt said in 40.5 % of the same 200 held-out prompts.
   Matrix work under bf16 autocast where the hardware has native bf16; weights in fp32.

Wall time: **{wall_min:.1f} min** in all ({vae_min:.1f} min for the VAE) on {hardware}, torch {torch}.

## Evaluation

`python -m training.evaluate` generates {pairs} held-out prompt/seed pairs with diffusers'
`StableDiffusionPipeline` (DDIM, 20 steps, guidance 7.5) and reads each image back with
the analyser in `training/scenes.py`; an attribute is scored where the prompt states it.

| measure | result | bar |
|---|---|---|
| shape colour right | **{colour:.1f} %** ({n_colour} prompts) | 90 % |
| shape right | **{shape:.1f} %** ({n_shape} prompts) | 80 % |
| position right | **{position:.1f} %** ({n_position} prompts) | 80 % |
| background colour right | **{background:.1f} %** ({n_background} prompts) | 90 % |
| VAE reconstruction PSNR, 256 held-out scenes | **{psnr:.1f} dB** | 28 dB |
| DAAM: the shape word's whole-run map (all layers) thresholded at 0.4 vs the drawn shape, mean IoU | **{miou:.3f}** ({daam} prompts) | 0.6 |
| the same from the {finest} x {finest} layers alone (the latent grid) | **{miou_finest:.3f}** | - |
| one 20-step DDIM generation with guidance, {threads} CPU threads | **{gen_seconds:.2f} s** | 1 s |

A subset of the same evaluation runs in the test suite (`tests/test_shapes_model.py`).

## Limitations

- It knows only its grammar: one shape on a flat background, 64 x 64 pixels.
- Its small VAE decodes far from linearly, so sdviz's `approx` preview (a least-squares
  linear map from latents to RGB) is a rough colour sketch on this model; `full` is exact
  and, at this size, cheap.

## Licence

MIT, as sdviz. The weights were trained from scratch on generated data. The tokenizer's
vocabulary is OpenAI CLIP's (MIT licence).
"""

OBJECTS_TEMPLATE = METADATA + """\
- text: a fish on the left and a rocket on the right on a blue background
- text: a large apple in the center on a purple background
- text: an owl at the top left and a tree at the bottom right on a pink background
- text: a small fish at the bottom on a white background
- text: a rocket at the top and a house at the bottom
---

# sdviz-objects: a Stable Diffusion 1.x-family model that draws objects where words say, on a CPU

The default model of [sdviz](../../README.md). It has every part of Stable Diffusion 1.x, in diffusers
format, trained from scratch by this project: it draws one of {n_objects} emoji objects, or two at
opposite sides, on a flat background, in {gen_seconds:.2f} s on {threads} CPU threads (20 DDIM steps with
guidance), so every step can be decoded and shown, and with two objects each word's attention lands on
its own object.

```python
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained("assets/sdviz-objects")
image = pipe("a fish on the left and a rocket on the right on a blue background", num_inference_steps=20).images[0]
```

## Data

{n_objects} objects from Microsoft's [Fluent Emoji](https://github.com/microsoft/fluentui-emoji) (flat style,
MIT licence), each rendered once into `training/atlas/atlas.png` from the SVGs of the npm package
`@iconify-json/fluent-emoji-flat` (`training/emoji_atlas.py`; licence and attribution in
`training/atlas/LICENSE`). Every object's name is one token of CLIP's vocabulary. Scenes are composited
from the atlas by `training/objects.py` at {size} x {size} pixels, with each object's exact mask kept.

## Grammar

    a [small|large] <object> [<position>] [on a <colour> background]
    a <object> <position> and a <object> <opposite position> [on a <colour> background]

- objects: {n_objects} (the list, with each one's Fluent icon name, is `scenes.json`'s `objects`);
- positions: {positions}, the centre jittered by up to {jitter:.0%} of the side; two objects
  stand at opposite positions ({pairs_said});
- background colours: {colours}; an object is drawn only on colours few of its own pixels come near;
- sizes (one object): small and large, {small:.0%} and {large:.0%} of the side; two objects {pair:.0%} each.

{two:.0%} of training scenes hold two objects, named in either order. Each phrase is kept in a caption
with a set chance (size {keep_size:.0%}, position {keep_pos:.0%}, background {keep_bg:.0%}), and
{uncond:.0%} of captions are empty (for classifier-free guidance). {held_out} % of the (object, position,
background) triples and of the object pairs are never drawn for training; the evaluation uses only
those. `scenes.json` holds the vocabularies (`objects`, `colours` as RGB, `positions` as centres in
fractions of the side) so the model can be checked with any analyser.

## Architecture

| component | diffusers / transformers class | configuration | parameters |
|---|---|---|---|
| tokenizer | `CLIPTokenizer` | the real CLIP BPE vocabulary (49408 tokens, 77 positions) | - |
| text encoder | `CLIPTextModel` | width {text_width}, {text_layers} layers, {text_heads} heads: token embeddings {tokens} x {text_width} | {p_text} |
| UNet | `UNet2DConditionModel` | channels {unet_channels}, latents {latent_channels} x {latent} x {latent}, cross-attention at {cross_res} | {p_unet} |
| VAE | `AutoencoderKL` | channels {vae_channels}, factor {factor}, {latent_channels} latent channels, scaling factor {scaling:.5f} | {p_vae} |
| scheduler | `DDIMScheduler` with the SD 1.x config | scaled_linear betas 0.00085 to 0.012, 1000 steps, epsilon prediction | - |

{p_total} parameters in all; UNet and VAE stored in float16, the text encoder in float32, as safetensors
only: {megabytes:.1f} MB on disk. No safety checker.

## Training

`python -m training.train_objects --out assets/sdviz-objects --state runs/objects-state` (seed {seed};
resumable: run it again after a stop) reproduces the recipe:

1. VAE: {vae_steps} steps, batch {vae_batch}, random {vae_crop} x {vae_crop} crops, L1 + MSE + a small KL term.
2. {pool} training scenes encoded once; `scaling_factor` = 1 / std of their latents.
3. Text encoder and UNet together: {unet_steps} steps, batch {unet_batch}, AdamW at {unet_lr:g} (warm-up
   {warmup} steps, then cosine decay to a tenth), epsilon prediction under SD 1.x's noise schedule, each
   timestep weighted as an x0 error by clamp(SNR, {snr_floor:g}, {gamma:g}), EMA {ema:g}; from t =
   {terminal_t} up the UNet sees pure noise instead of the noised scene, so that the layout comes from
   the words (see `training/train.py`).
{taken}
Wall time: **{wall_h:.1f} h** on {hardware}, torch {torch}.{carried}

## Evaluation

`python -m training.evaluate_objects` generates {pairs} held-out prompt/seed pairs (half with one object,
half with two) with diffusers' `StableDiffusionPipeline` (DDIM, 20 steps, guidance 7.5) and reads each
image back with the analyser in `training/objects.py` (nearest-template classification of each found
object against the atlas, and its centroid). DAAM: each object word's whole-run cross-attention map
from sdviz, thresholded at 0.4, against the objects the analyser finds in the same run's image.

| measure | result | bar |
|---|---|---|
{rows}
| VAE reconstruction PSNR, {vae_eval} held-out scenes | **{psnr:.1f} dB** | - |
| one 20-step DDIM generation with guidance, {threads} CPU threads | **{gen_seconds:.2f} s** | 1 s |

A subset of the same evaluation runs in the test suite (`tests/test_object_model.py`).

## Limitations

- It knows only its grammar: {n_objects} objects, one or two, on a flat background, {size} x {size} pixels.
  Other words are unknown tokens to it; two objects stand only at opposite positions.
- Small objects lose detail through the VAE; look-alike emoji (a lemon and a banana, say) can be confused.
  Four-legged animals suffer most: a cat, a dog, a deer or a goat often comes out as one generic animal.

## Licence

MIT, as sdviz. The weights were trained from scratch on scenes composited from Microsoft's Fluent Emoji
(MIT licence, Copyright (c) Microsoft Corporation). The tokenizer's vocabulary is OpenAI CLIP's (MIT licence).
"""

MEASURES = {  # eval.json's rates: what the card calls them
    "object": "one object: the object right",
    "position": "one object: its position right",
    "background": "background colour right",
    "both objects": "two objects: both right, each on its side",
    "daam own > other": "two objects: each word's map overlaps its own object more than the other",
    "daam iou": "two objects: mean IoU of each word's map with its own object",
}


def parameter_count(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(path, "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 - a safetensors file, not a dict
                total += math.prod(weights.get_slice(key).get_shape())
    return total


def millions(count: int) -> str:
    return f"{count / 1e6:.2f} M"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "a CPU"


def architecture(model: Path) -> dict:
    """The card's architecture fields, read from the folder's configs and weights."""
    unet = json.loads((model / "unet" / "config.json").read_text())
    vae = json.loads((model / "vae" / "config.json").read_text())
    text = json.loads((model / "text_encoder" / "config.json").read_text())
    latent = unet["sample_size"]
    levels = len(unet["down_block_types"])
    cross = [latent >> i for i, kind in enumerate(unet["down_block_types"]) if "CrossAttn" in kind]
    cross_res = ", ".join(f"{r} x {r}" for r in cross) + f" and the {latent >> (levels - 1)} x {latent >> (levels - 1)} middle"
    counts = {name: parameter_count(model / name) for name in ("text_encoder", "unet", "vae")}
    return dict(
        text_width=text["hidden_size"], text_layers=text["num_hidden_layers"], text_heads=text["num_attention_heads"],
        tokens=text["max_position_embeddings"], unet_channels=tuple(unet["block_out_channels"]),
        latent_channels=unet["in_channels"], latent=latent, cross_res=cross_res,
        vae_channels=tuple(vae["block_out_channels"]), factor=2 ** (len(vae["block_out_channels"]) - 1),
        scaling=vae["scaling_factor"], p_text=millions(counts["text_encoder"]), p_unet=millions(counts["unet"]),
        p_vae=millions(counts["vae"]), p_total=millions(sum(counts.values())),
        megabytes=sum(p.stat().st_size for p in model.rglob("*.safetensors")) / 1e6,
    )


def hardware_text(hardware: dict) -> str:
    if hardware.get("gpu"):
        return hardware["gpu"]
    if hardware["device"] != "cpu":
        return hardware["device"]
    return f"{hardware['threads']} threads of an {hardware.get('cpu_name') or cpu_name()}"


def training_fields(cfg: dict) -> dict:
    keys = ("seed", "vae_steps", "vae_batch", "vae_crop", "pool", "unet_steps", "unet_batch", "unet_lr", "warmup",
            "terminal_t")
    return {**{key: cfg[key] for key in keys}, "snr_floor": cfg["snr_floor"], "gamma": cfg["min_snr_gamma"],
            "ema": cfg["ema_decay"], "uncond": cfg["uncond_prob"]}


def render(model: Path) -> str:
    if (model / "scenes.json").exists():
        return render_objects(model)
    log = json.loads((model / "training_log.json").read_text())
    report = json.loads((model / "eval.json").read_text())
    cfg = log["config"]
    acc, scored = report["accuracy"], report["scored"]
    fields = architecture(model)
    return TEMPLATE.format(
        **fields,
        **training_fields(cfg),
        gen_seconds=report["generation_seconds_20_steps"],
        size=cfg["image_size"],
        colours=", ".join(scenes.COLOURS),
        shapes=", ".join(scenes.SHAPES),
        sizes=", ".join(scenes.SIZES),
        positions=", ".join(scenes.POSITION_PHRASES.values()),
        jitter=scenes.JITTER,
        keep_size=scenes.KEEP_SIZE,
        keep_pos=scenes.KEEP_POSITION,
        keep_bg=scenes.KEEP_BACKGROUND,
        held_out=scenes.HELD_OUT_PERCENT,
        combos=len(list(scenes.all_combos())),
        terminal_share=cfg["terminal_share"] * 100,
        wall_min=log["wall_seconds"]["total"] / 60,
        vae_min=log["wall_seconds"]["vae"] / 60,
        hardware=hardware_text(log["hardware"]),
        torch=log["torch"],
        pairs=report["pairs"],
        colour=acc["colour"] * 100, shape=acc["shape"] * 100,
        position=acc["position"] * 100, background=acc["background"] * 100,
        n_colour=scored["colour"], n_shape=scored["shape"],
        n_position=scored["position"], n_background=scored["background"],
        psnr=report["vae_psnr_db"],
        miou=report["daam_miou"],
        daam=report["daam_prompts"],
        threads=report["threads"],
        finest=fields["latent"],
        miou_finest=report["daam_miou_finest_resolution"],
    )


def render_objects(model: Path) -> str:
    """The object model's card (OBJECTS_TEMPLATE), from the files `training.train_objects` and
    `training.evaluate_objects` write."""
    from training.evaluate_objects import BARS

    log = json.loads((model / "training_log.json").read_text())
    report = json.loads((model / "eval.json").read_text())
    cfg = log["config"]
    vocabulary = json.loads((model / "scenes.json").read_text())
    starts = sum("] device " in line for line in log["log"])  # each process logs its device first
    resumes = starts - 1 - sum("] snapshot at unet step" in line for line in log["log"])
    carries = sum("resumed from a carry" in line for line in log["log"])
    carried = (f" The run was stopped and resumed {resumes} time{'s' * (resumes != 1)}, {carries} of them from a "
               "carry (on another machine); `training_log.json` holds its whole log." if resumes else "")
    taken = ""
    if log["unet_step"] < cfg["unet_steps"]:
        taken = (f"\nThese weights are the EMA's at UNet step {log['unet_step']} of the {cfg['unet_steps']}: the run "
                 f"was stopped there (`--stop-at-step {log['unet_step']}`) and the model written as it stood "
                 "(`--snapshot DIR`, same `--state`).\n")
    rows = []
    for key, label in MEASURES.items():
        rate = report["rates"][key]
        shown = f"{rate:.3f}" if key == "daam iou" else f"{rate * 100:.1f} %"
        rows.append(f"| {label} | **{shown}** ({report['counts'][key]}) | "
                    + (f"{BARS[key]:.2f}" if key == "daam iou" else f"{BARS[key] * 100:.0f} %") + " |")
    pairs = sorted({" / ".join(sorted((a, b))) for a, b in objects.OPPOSITE.items()})
    return OBJECTS_TEMPLATE.format(
        **architecture(model),
        **training_fields(cfg),
        n_objects=len(vocabulary["objects"]),
        gen_seconds=report["generation_seconds_20_steps"],
        threads=report["threads"],
        size=cfg["image_size"],
        positions=", ".join(vocabulary["positions"]),
        pairs_said=", ".join(pairs),
        jitter=objects.JITTER,
        colours=", ".join(vocabulary["colours"]),
        small=objects.SIZES["small"], large=objects.SIZES["large"], pair=objects.PAIR_SIZE,
        two=objects.TWO_OBJECTS,
        keep_size=objects.KEEP_SIZE, keep_pos=objects.KEEP_POSITION, keep_bg=objects.KEEP_BACKGROUND,
        held_out=objects.HELD_OUT_PERCENT,
        wall_h=log["wall_seconds"] / 3600,
        hardware=hardware_text(log["hardware"]),
        torch=log["torch"],
        carried=carried,
        taken=taken,
        pairs=report["pairs"],
        rows="\n".join(rows),
        vae_eval=report["vae_scenes"],
        psnr=report["vae_psnr_db"],
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("assets/sdviz-shapes"))
    args = parser.parse_args(argv)
    (args.model / "README.md").write_text(render(args.model))
    print(f"wrote {args.model / 'README.md'}")


if __name__ == "__main__":
    main()
