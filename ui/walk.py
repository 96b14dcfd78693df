"""The "How it works" walk: *The Illustrated Stable Diffusion*'s sections in order, each a short text for a
student (the catalogue's walk.*, in the session's language) beside a panel filled from the current run
(`ui.tabs.explain.ExplainHandlers.walk` fills them, in WALK_PANELS order), and the sentences on what a
few-step run does differently."""

from __future__ import annotations

import gradio as gr

from sdviz.messages import text
from ui.words import say

SECTION_PANELS = (  # each section's panels, in order; its title and text are the catalogue's walk.title.N, walk.text.N
    ("components",), ("tokens",), ("denoise", "path", "path-note"), ("forward", "forward-note", "prediction"),
    ("latent", "latent-note"),
    ("attention-note", "attention"), ("guidance", "guidance-note"),
)
SCHEDULER_NOTES = ("lcm", "tcd")  # the schedulers whose step returns something beside the sample that is not x0


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
    sentences = [text(f"few_step.{kind}", **fields)]
    if traj.settings.scheduler in SCHEDULER_NOTES:
        sentences.append(text(f"few_step.note.{traj.settings.scheduler}", **fields))
    return text("sentence.gap").join(sentences)


def few_step_note(traj) -> str:
    """The explorer's step line's addition for a few-step run: '' for the others."""
    sentence = few_step_sentence(traj)
    return f"  \n{sentence}" if sentence else ""


def section_texts(traj=None) -> list[str]:
    """Each section's Markdown, in the session's language and the words of the run's model (before a run:
    Stable Diffusion's UNet)."""
    facts = traj.facts if traj is not None else None
    denoiser = traj.denoiser_word if traj is not None else "UNet"
    flow = facts is not None and facts.prediction_type == "flow"
    encoders = len(facts.encoders or [None]) if facts is not None else 1
    fields = {"denoiser": denoiser,
              "encoders": text(f"walk.encoders.{encoders}") if encoders <= 3 else text("walk.encoders.n",
                                                                                       count=encoders)}
    fields["forward"] = text("walk.forward." + ("flow" if flow else "noise"), **fields)
    fields["attention"] = text("walk.attention." + ("joint" if denoiser == "transformer" else "cross"), **fields)
    sentence = few_step_sentence(traj) if traj is not None else ""
    fields["few_step"] = (text("sentence.gap") + sentence) if sentence else ""
    return [f"### {text(f'walk.title.{index}', **fields)}\n{text(f'walk.text.{index}', **fields)}"
            for index in range(1, len(SECTION_PANELS) + 1)]


WALK_PANELS = tuple(name for index, panels in enumerate(SECTION_PANELS) for name in (f"text-{index + 1}", *panels))


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
    gr.Markdown(say("walk.header"))
    texts = dict(zip((f"text-{index + 1}" for index in range(len(SECTION_PANELS))), section_texts()))
    panels = {name: _panel(name, texts.get(name, "")) for name in WALK_PANELS}
    return [panels[name] for name in WALK_PANELS]
