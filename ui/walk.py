"""The words of the explaining tabs, and the "How it works" walk: *The Illustrated Stable Diffusion*'s
sections in order, each a short text for a student beside a panel filled from the current run
(`ui.explain.ExplainHandlers.walk` fills them, in WALK_PANELS order)."""

from __future__ import annotations

import gradio as gr

GUIDANCE_INTRO = """### Guidance, decomposed
Every step the UNet runs twice: once with the empty (or negative) prompt, once with your prompt. Each run
predicts the noise, and so a clean image x0. Classifier-free guidance takes the difference between the two
and pushes further along it, by the guidance scale g."""

SCHEDULE_INTRO = """### The noise schedule
How much noise is left at each step. σ is noise over signal; ᾱ is the share of the signal's variance left
(1 is a clean image, 0 pure noise); SNR = ᾱ / (1 − ᾱ). Schedulers differ in *where* they put their steps for
the same count: Karras spacing spends more of them at low noise, where details are drawn."""

DECIDED_INTRO = """### Where the picture is decided
How far each step's predicted x0 and x_t still are from the final image. The predicted x0 gets close within
a few steps, long before x_t, which is still mostly noise: the layout is decided early, the remaining steps
refine it."""

FORWARD_INTRO = """### The forward process: adding noise in amounts
Training takes a clean image, adds noise in a known amount and asks the UNet to predict that noise. Here
is that with this run's final image at this run's own noise levels, above the x_t the run itself passed
through at the same levels."""

LATENT_INTRO = """### Latent space
The UNet never sees pixels. The VAE's encoder compresses an image into a few latent channels; its decoder
turns latents back into an image. Every step of the run happens in this small space."""

EDIT_INTRO = """**Edit** runs CycleDiffusion (Wu & De la Torre, 2023): the image is noised part of the way
(strength) and two chains run down from there with the same noise, one with the source prompt, one with
the edit. Where the explorer's *edit against its source* shows dark, the edit kept the image.
**Invert** runs DDIM backwards, from the image to noise through the model itself, then forward again from
that noise with the source prompt: how close it comes back is the reconstruction error."""

COMPARE_INTRO = """### Compare: one seed through different choices
The settings on the left, with one or two of them varied (two give every combination, 8 variants at most),
all from the same seed. The variants run one after another, each into its own column. Then one slider lines
them up: by **progress** (the same share of each run's steps) or by **sigma** (the same noise level, so a run
with more steps, or a second-order scheduler's doubled entries, is shown where its noise is the same)."""

SECTIONS = (
    ("1. Three components", "A text encoder turns the prompt into numbers, a UNet removes noise from a "
     "latent image step by step, and a VAE decoder turns the final latents into pixels. Below: the model of "
     "this run, with its real sizes.", ("components",)),
    ("2. From text to numbers", "The tokenizer cuts the prompt into tokens and pads it to a fixed window. "
     "The text encoder gives one vector per slot; the UNet reads all of them at every step.", ("tokens",)),
    ("3. From noise to image", "The run starts from random latents and removes a little noise at every step. "
     "Decoded, the steps look like this (your run). Below, the walk looks closely at the step a quarter of the "
     "way in, where the picture is being decided.", ("denoise",)),
    ("4. The forward process, and what the UNet predicts", "To train the UNet, noise is added to real images in "
     "known amounts (top row); the UNet learns to say which noise was added. Sampling runs the other way "
     "(bottom row). At every step the UNet predicts the noise in x_t; taking it out gives the predicted x0.",
     ("forward", "forward-note", "prediction")),
    ("5. Latent space", "All of this happens on compressed latents, not pixels: the UNet, which runs at every "
     "step (twice, with guidance), handles far fewer numbers than the image has. That is what makes Stable "
     "Diffusion fast.", ("latent", "latent-note")),
    ("6. How the words steer the picture", "Between the UNet's ResNet blocks sit attention layers. In the "
     "cross-attention ones, each latent pixel looks at the token vectors and takes in the ones that matter "
     "to it.", ("attention-note", "attention")),
    ("7. Guidance", "The UNet is asked twice per step, without and with the prompt; the difference is what the "
     "prompt adds, and guidance multiplies it (the Explore tab shows this at any step).",
     ("guidance", "guidance-note")),
)

WALK_PANELS = tuple(name for _, _, panels in SECTIONS for name in panels)


def _panel(name: str):
    elem_id = f"walk-{name}"
    if name in ("components", "tokens"):
        return gr.HTML(elem_id=elem_id, elem_classes="sdviz-walk-panel")
    if name.endswith("-note"):
        return gr.Markdown(elem_id=elem_id, elem_classes="sdviz-walk-panel")
    return gr.Image(format="png", interactive=False, show_label=False, elem_id=elem_id,
                    elem_classes=["sdviz-walk-panel", "sdviz-pixelated"])


def build() -> list:
    """Places the walk's sections; returns its panels in WALK_PANELS order."""
    gr.Markdown("## How it works\nA walk through *The Illustrated Stable Diffusion* (Jay Alammar), with every "
                "picture and number taken from the run you just made. Generate, then open this tab.")
    panels = {}
    for title, text, names in SECTIONS:
        gr.Markdown(f"### {title}\n{text}")
        for name in names:
            panels[name] = _panel(name)
    return [panels[name] for name in WALK_PANELS]
