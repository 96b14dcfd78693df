"""The Tokens and Attention tabs: the prompt's token slots; where each word's cross-attention went at
the slider's step (DAAM's heat maps), the self-attention of a clicked pixel, and the model's attention
layers in execution order.

The heat map is drawn with the explorer's step (`heat`, called by `ui.tabs.explore`); the word,
resolution and span choices are set after each run (`word_choices`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from sdviz.drawing.views import overlay
from sdviz.sampling.attention import model_layer_table
from sdviz.sampling.checks import check_choice, check_float, check_settings
from sdviz.sampling.errors import InputError
from sdviz.sampling.settings import Settings
from sdviz.sampling.tokens import shown
from ui import components
from ui.clicks import clickable, clicked
from ui.errors import user_errors
from ui.session import step_index
from ui.tabs.shared import PRIVATE, Shared
from ui.words import say

SPANS = ("this step", "up to this step", "whole run")
SPAN_WORDS = ("attention.span.this", "attention.span.up_to", "attention.span.whole")  # what the choices show
NEGATIVE_WORD = "negative:"  # the Word choice of a negative prompt's word: this, then its slot


def word_choices(traj) -> tuple[list, list[str], list[str]]:
    """A run's Word choices ((label, slot): the prompt's words, then the negative prompt's), its captured
    cross-attention resolutions ("all" first) and its self-attention resolutions."""
    maps = traj.attention
    token_choices = [(f"{i}: {shown(maps.tokens[i])}", i) for i in maps.word_slots()] if maps else []
    if maps is not None and maps.negative is not None:  # the negative prompt's words, from the unconditional half
        negative = maps.negative
        token_choices += [(f"negative {i}: {shown(negative.tokens[i])}", f"{NEGATIVE_WORD}{i}")
                          for i in negative.word_slots()]
    resolutions = ["all", *maps.resolutions] if maps else ["all"]
    self_resolutions = sorted(maps.self_attn) if maps else []
    return token_choices, resolutions, self_resolutions


def span_steps(span: str, index: int):
    """The steps a heat map of the span choice `span` sums at step `index` (AttentionMaps.heat_map's `steps`):
    that step, the steps up to it, or every step (None)."""
    return {"this step": index, "up to this step": range(index + 1)}.get(span)


def heat(traj, index: int, token, resolution, span, x0_image):
    """The heat map of the chosen word over `x0_image` (the whole run's: over the final image), at step `index`,
    up to it or over the whole run; None without attention maps or a word."""
    maps = traj.attention
    token_choices, resolutions, _ = word_choices(traj)
    check_choice("resolution", resolution, resolutions)
    check_choice("steps", span, SPANS)
    if maps is None or token is None:
        return None
    check_choice("word", token, [value for _, value in token_choices])
    if isinstance(token, str):  # a negative prompt's word: 'negative:3'
        maps, token = maps.negative, int(token[len(NEGATIVE_WORD):])
    steps = span_steps(span, index)
    base = traj.final_image if span == "whole run" and traj.final_image is not None else x0_image
    return overlay(base, maps.heat_map(token, steps=steps, resolution=resolution))


# --- the tabs ------------------------------------------------------------------------------------

@dataclass
class AttentionView:
    tokens: gr.HTML
    word: gr.Radio
    resolution: gr.Dropdown
    span: gr.Radio
    heat: gr.Image
    probe: gr.Image
    probe_resolution: gr.Dropdown


def build(handlers: AttentionHandlers, shared: Shared, settings, x0_view: gr.Image) -> AttentionView:
    """The Tokens and Attention tabs, and their own events: the probe (on the explorer's x0, `x0_view`) and
    the layer table (at the size and guidance of the run `settings`, ui.tabs.run.RunSettings)."""
    with gr.Tab(say("tab.tokens")):
        tokens = gr.HTML(elem_id="tokens")
    with gr.Tab(say("tab.attention")):
        with gr.Row():
            word = components.Radio([], label=say("attention.word"), elem_id="word")
            resolution = components.Dropdown(["all"], value="all", label=say("attention.resolution"))
            span = components.Radio([(say(key), value) for key, value in zip(SPAN_WORDS, SPANS)], value="this step",
                                    label=say("attention.steps"))
        with gr.Row(elem_classes="sdviz-pixelated"):
            heat_view = gr.Image(label=say("attention.heat"), height=220, format="png", interactive=False,
                                 elem_id="heat")
            probe = gr.Image(label=say("attention.probe"), height=220, format="png",
                             interactive=False)
            probe_resolution = components.Dropdown([], label=say("attention.probe_resolution"))
        show_layers = gr.Button(say("attention.show_layers"), size="sm")
        layer_rows = gr.Dataframe(headers=["index", "kind", "resolution", "query", "key", "value", "probs", "name"],
                                  label=say("attention.layers"), wrap=True)
    probe.select(handlers.probe, [shared.states.trajectory, shared.step, probe_resolution], probe,
                 concurrency_limit=None, **PRIVATE)
    x0_view.change(None, x0_view, probe, js="(image) => image", show_progress="hidden")  # in the page alone
    show_layers.click(handlers.layers, [settings.model, settings.width, settings.height, settings.guidance],
                      layer_rows, concurrency_limit=shared.concurrency, concurrency_id="model", **PRIVATE)
    return AttentionView(tokens, word, resolution, span, heat_view, probe, probe_resolution)


class AttentionHandlers:
    def __init__(self, session):
        self.session, self.threads, self.files = session, session.threads, session.files

    @user_errors
    def probe(self, traj, step, resolution, event: gr.EventData):
        """Self-attention of the clicked pixel at this step (as DiffSeg reads it). The click comes as the
        event's data (gradio's SelectData: its `index` is the pixel [x, y]), checked here like any value."""
        if traj is None or traj.attention is None:
            raise InputError.said("error.probe_needs_attention")
        index = step_index(traj, step)
        height, width = traj.shapes["image"][1:]
        x, y = clicked(event, height, width)  # the probe shows x0 as the explorer sent it: enlarged
        check_choice("self-attention resolution", resolution, sorted(traj.attention.self_attn))
        return self.threads.call(self._probe, traj, index, resolution, x, y)  # torch: on a model thread

    def _probe(self, traj, index, resolution, x, y):
        probed = traj.attention.self_attention_probe(y, x, step=index, resolution=resolution)
        image = overlay(traj.step_frames(index, self.session.decoder(traj))[1], probed)
        image[y, x] = (255, 255, 255)
        return self.files.image(clickable(image))

    @user_errors
    def layers(self, model_name, width, height, guidance):
        """The attention layer inventory at this size; within the host's pixel limit, like a run."""
        model = self.session.model(model_name)
        guidance = check_float("guidance", guidance, 0.0, 100.0)
        settings = check_settings(Settings(width=width, height=height), model.facts, limits=self.session.limits)
        rows = self.threads.call(model_layer_table, model, settings.height, settings.width, guidance=guidance > 1)
        return [[r["index"], r["kind"], r["resolution"], str(tuple(r["query_shape"])), str(tuple(r["key_shape"])),
                 str(tuple(r["value_shape"])), str(tuple(r["probs_shape"])), r["name"]] for r in rows]
