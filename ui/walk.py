"""The words of the explaining tabs, and the "How it works" walk: *The Illustrated Stable Diffusion*'s
sections in order, each a short text for a student beside a panel filled from the current run
(`ui.tabs.explain.ExplainHandlers.walk` fills them, in WALK_PANELS order)."""

from __future__ import annotations

import gradio as gr

GUIDANCE_INTRO = """### Guidance, decomposed
Every step the denoiser (the UNet, or SD3's and Flux's transformer) runs twice: once with the empty (or
negative) prompt, once with your prompt. Each run predicts the noise (or the velocity), and so a clean image x0. \
Classifier-free guidance takes the difference between the two
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
Training takes a clean image, adds noise in a known amount and asks the denoiser to predict that noise
(flow models: the velocity from the image to the noise). Here
is that with this run's final image at this run's own noise levels, above the x_t the run itself passed
through at the same levels."""

LATENT_INTRO = """### Latent space
The denoiser (UNet or transformer) never sees pixels. The VAE's encoder compresses an image into a few latent
channels; its decoder turns latents back into an image. Every step of the run happens in this small space."""

EDIT_INTRO = """**Edit** runs CycleDiffusion (Wu & De la Torre, 2023): the image is noised part of the way
(strength) and two chains run down from there with the same noise, one with the source prompt, one with
the edit. Where the explorer's *edit against its source* shows dark, the edit kept the image.
**Invert** runs DDIM backwards (flow models: their Euler steps), from the image to noise through the model
itself, then forward again from that noise with the source prompt: how close it comes back is the
reconstruction error."""

COMPARE_INTRO = """### Compare: one seed through different choices
The settings on the left, with one or two of them varied (two give every combination, 8 variants at most),
all from the same seed. The variants run one after another, each into its own column. Then one slider lines
them up: by **progress** (the same share of each run's steps) or by **sigma** (the same noise level, so a run
with more steps, or a second-order scheduler's doubled entries, is shown where its noise is the same)."""

SECTIONS = (  # (title, text, panels); {denoiser} and the rest are filled from the run (`section_texts`)
    ("1. Three components", "{encoders} the prompt into numbers, a {denoiser} removes noise from a latent image "
     "step by step, and a VAE decoder turns the final latents into pixels. Below: the model of this run, with its "
     "real sizes.", ("components",)),
    ("2. From text to numbers", "The tokenizer cuts the prompt into tokens and pads it to a fixed window. "
     "The text encoder gives one vector per slot; the {denoiser} reads all of them at every step.", ("tokens",)),
    ("3. From noise to image", "The run starts from random latents and removes a little noise at every step. "
     "Decoded, the steps look like this (your run).{few_step} Below, the walk looks closely at the step a quarter "
     "of the way in, where the picture is being decided.", ("denoise",)),
    ("4. The forward process, and what the {denoiser} predicts", "{forward}",
     ("forward", "forward-note", "prediction")),
    ("5. Latent space", "All of this happens on compressed latents, not pixels: the {denoiser}, which runs at every "
     "step (twice, with guidance), handles far fewer numbers than the image has. That is what makes latent "
     "diffusion fast.", ("latent", "latent-note")),
    ("6. How the words steer the picture", "{attention}", ("attention-note", "attention")),
    ("7. Guidance", "The {denoiser} is asked twice per step, without and with the prompt; the difference is what "
     "the prompt adds, and guidance multiplies it (the Explore tab shows this at any step).",
     ("guidance", "guidance-note")),
)

FORWARD = {  # section 4, by what the denoiser predicts
    "noise": "To train the {denoiser}, noise is added to real images in known amounts (top row); the {denoiser} "
             "learns to say which noise was added. Sampling runs the other way (bottom row). At every step the "
             "{denoiser} predicts the noise in x_t; taking it out gives the predicted x0.",
    "flow": "To train the {denoiser}, real images are mixed with noise in known amounts, x_t = (1 − σ)·x0 + σ·ε "
            "(top row); the {denoiser} learns the velocity v = ε − x0, the straight way from the image to its "
            "noise. Sampling runs the other way (bottom row). At every step the {denoiser} predicts v at x_t; "
            "stepping back along it by σ gives the predicted x0 = x_t − σ·v.",
}

ATTENTION = {  # section 6, by the denoiser's kind of attention
    "cross": "Between the {denoiser}'s ResNet blocks sit attention layers. In the cross-attention ones, each latent "
             "pixel looks at the token vectors and takes in the ones that matter to it.",
    "joint": "The {denoiser} has no separate cross-attention: its blocks run joint attention over image patches and "
             "text tokens together, so each latent patch looks at every word and every other patch at once and "
             "takes in the ones that matter to it.",
}

DENOISED_LABEL = "LCM's denoised: c_skip·x_t + c_out·x0, what its step starts from (not x0)"

FEW_STEP = {  # what a few-step run does differently, in one sentence (the walk's section 3, the explorer's step)
    "consistency": "This is a few-step model ({scheduler}): each step jumps straight to an estimate of the clean "
                   "image and noises it again to the next, lower level (consistency), instead of taking a small "
                   "step down, so a handful of steps make the picture.",
    "few": "With {steps} steps each step is a jump: the {denoiser}'s estimate of the clean image, noised again to "
           "the next level; few-step models (Turbo, Lightning, Hyper-SD) are distilled to make these jumps well.",
}
SCHEDULER_NOTES = {  # what x0 is not, for the schedulers whose step returns something else beside the sample
    "lcm": "LCM steps from its denoised estimate (c_skip·x_t + c_out·x0, shown beside x0), not from x0 itself.",
    "tcd": "TCD first noises x0 part-way down (its gamma, the run's eta {eta:g}); that sample is not x0 and is "
           "not shown as one.",
}


def few_step_kind(traj) -> str | None:
    """'consistency' for LCM's and TCD's steps (or an LCM model), 'few' for any run of 4 steps or fewer."""
    if traj.settings.scheduler in ("lcm", "tcd") or traj.facts.family == "lcm":
        return "consistency"
    return "few" if traj.settings.steps <= 4 else None


def few_step_sentence(traj) -> str:
    """The sentence on what this few-step run does differently; '' for the others."""
    kind = few_step_kind(traj)
    if kind is None:
        return ""
    fields = {"scheduler": traj.settings.scheduler, "steps": traj.settings.steps, "denoiser": traj.denoiser_word,
              "eta": traj.settings.eta}
    note = SCHEDULER_NOTES.get(traj.settings.scheduler, "")
    return " ".join(filter(None, (FEW_STEP[kind].format(**fields), note.format(**fields))))


def few_step_note(traj) -> str:
    """The explorer's step line's addition for a few-step run: '' for the others."""
    sentence = few_step_sentence(traj)
    return f"  \n{sentence}" if sentence else ""


COUNTS = {1: "A text encoder turns", 2: "Two text encoders turn", 3: "Three text encoders turn"}


def section_texts(traj=None) -> list[str]:
    """Each section's Markdown, in the words of the run's model (before a run: Stable Diffusion's UNet)."""
    facts = traj.facts if traj is not None else None
    denoiser = traj.denoiser_word if traj is not None else "UNet"
    flow = facts is not None and facts.prediction_type == "flow"
    encoders = len(facts.encoders or [None]) if facts is not None else 1
    fields = {"denoiser": denoiser, "encoders": COUNTS.get(encoders, f"{encoders} text encoders turn")}
    fields["forward"] = FORWARD["flow" if flow else "noise"].format(**fields)
    fields["few_step"] = (" " + few_step_sentence(traj)) if traj is not None and few_step_sentence(traj) else ""
    fields["attention"] = ATTENTION["joint" if denoiser == "transformer" else "cross"].format(**fields)
    return [f"### {title.format(**fields)}\n{text.format(**fields)}" for title, text, _ in SECTIONS]


WALK_PANELS = tuple(name for index, (_, _, panels) in enumerate(SECTIONS) for name in (f"text-{index + 1}", *panels))


def _panel(name: str, text: str = ""):
    elem_id = f"walk-{name}"
    if name in ("components", "tokens"):
        return gr.HTML(elem_id=elem_id, elem_classes="sdviz-walk-panel")
    if name.startswith("text-"):
        return gr.Markdown(text, elem_id=elem_id)
    if name.endswith("-note"):
        return gr.Markdown(elem_id=elem_id, elem_classes="sdviz-walk-panel")
    return gr.Image(format="png", interactive=False, show_label=False, elem_id=elem_id,
                    elem_classes=["sdviz-walk-panel", "sdviz-pixelated"])


def build() -> list:
    """Places the walk's sections; returns its panels in WALK_PANELS order."""
    gr.Markdown("## How it works\nA walk through *The Illustrated Stable Diffusion* (Jay Alammar), with every "
                "picture and number taken from the run you just made. Generate, then open this tab.")
    texts = dict(zip((f"text-{index + 1}" for index in range(len(SECTIONS))), section_texts()))
    panels = {name: _panel(name, texts.get(name, "")) for name in WALK_PANELS}
    return [panels[name] for name in WALK_PANELS]
