"""The path views: the trajectory map beside the explorer (a fork drawn with its parent), the words behind a
region clicked on the explorer's x0, and in the Compare tab the variants' map and where they part.

Each is drawn from the library (`sdviz.analysis.path`, `sdviz.drawing.pathmap`): the map is a picture whose
clicked point is found again by where it was drawn, so a click moves the slider to that point's step (in the
Compare tab, to that variant's step on the shared position).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import gradio as gr
import numpy as np
import pandas as pd

from sdviz.analysis.align import at, check_alignment, positions
from sdviz.analysis.path import PARTED, parting, region_words, trajectory_map
from sdviz.drawing.pathmap import map_picture, nearest
from sdviz.drawing.views import overlay
from sdviz.messages import text
from sdviz.sampling.checks import check_choice, check_int
from sdviz.sampling.errors import InputError
from sdviz.workflows.compare import MAX_VARIANTS
from ui import components
from ui.clicks import clickable, clicked
from ui.errors import user_errors
from ui.session import step_index
from ui.tabs.attention import SPANS, span_steps
from ui.tabs.shared import PRIVATE
from ui.words import say

REGION_SHARE = 4  # a click on x0 asks about the box around it, a quarter of the picture's side
PATH_SPANS = dict(zip(SPANS, ("step", "upto", "run")))  # the Attention tab's span choices, as the library's
TOP_WORDS = 24  # tokens listed for a region (a prompt of CLIP's 77 slots lists its words and more)
NEGATIVE_MARK = "−"  # before a negative prompt's word in the list


@dataclass
class PathView:
    """The map and the region's words, under the explorer's pictures."""

    map: gr.Image
    words: gr.Label
    heat: gr.Image
    words_note: gr.Markdown
    box: gr.State  # the region last clicked: (x0, y0, x1, y1) in image pixels, or None


@dataclass
class ComparePathView:
    map: gr.Image
    against: gr.Dropdown
    plot: gr.LinePlot
    note: gr.Markdown


def map_column(note: str, elem_id: str) -> gr.Image:
    """A column: the sentence saying what to look for, and the map under it (a picture to click)."""
    with gr.Column():
        gr.Markdown(say(note))
        return gr.Image(label=say("path.map"), format="png", interactive=False, height=300, elem_id=elem_id)


def build() -> PathView:
    with gr.Row():
        picture = map_column("path.map_note", "path-map")
        with gr.Column():
            words_note = gr.Markdown(say("path.words_note"), elem_id="region-note")
            with gr.Row():
                words = gr.Label(label=say("path.words"), num_top_classes=TOP_WORDS, elem_id="region-words")
                heat = gr.Image(label=say("path.word_heat"), format="png", interactive=False, height=200,
                                elem_id="region-heat", elem_classes="sdviz-pixelated")
    return PathView(picture, words, heat, words_note, gr.State(None))


def build_compare() -> ComparePathView:
    with gr.Row():
        picture = map_column("path.compare_note", "compare-map")
        with gr.Column():
            against = components.Dropdown([1], value=1, label=say("path.against"), elem_id="compare-against")
            plot = gr.LinePlot(x="position", y="value", color="variant", title=say("path.parting_plot"),
                               x_title=say("plot.position"), y_title=say("plot.x0_difference"),
                               color_title=say("plot.variant"), height=240, elem_id="compare-parting")
            note = gr.Markdown(elem_id="compare-parting-note")
    return ComparePathView(picture, against, plot, note)


@dataclass
class PathSteps:
    """What the path adds to the slider's step: its panels drawn at the step (`parts`, an event's keyword
    arguments each, joined to the explorer's one event a move) and the events that move the slider (`moves`)."""

    parts: tuple
    moves: tuple


def wire(handlers: PathHandlers, view: PathView, trajectory, parent, step, span, x0_view, runs) -> PathSteps:
    """The map drawn at the slider's step and a click on it moving the slider; a click on x0 ranking the words
    of the region around it, kept as the slider moves; a word clicked shows its map. Each run starts afresh."""
    hidden = dict(concurrency_limit=None, show_progress="hidden", **PRIVATE)
    drawn = dict(fn=handlers.map_view, inputs=[trajectory, parent, step], outputs=[view.map])
    ranked = dict(fn=handlers.region_again, inputs=[trajectory, step, span, view.box],
                  outputs=[view.words, view.words_note])
    clicked_map = view.map.select(handlers.map_click, [trajectory, parent], step, **hidden)
    x0_view.select(handlers.region, [trajectory, step, span], [view.words, view.heat, view.words_note, view.box],
                   **hidden)
    span.change(**ranked, **hidden)
    view.words.select(handlers.word_heat, [trajectory, step, span, view.box], view.heat, **hidden)
    for event in runs:
        event.success(lambda: (None, None, say("path.words_note"), None), None,
                      [view.words, view.heat, view.words_note, view.box], show_progress="hidden", **PRIVATE)
    return PathSteps((drawn, ranked), (clicked_map,))


def wire_compare(handlers: PathHandlers, view: ComparePathView, comparison, position, align, finished) -> PathSteps:
    """After a comparison (`finished`): its map and where its variants part from the first; the parting follows
    the chosen variant, and a click on the map moves the slider. The map drawn at the slider's position is
    returned as a part (`PathSteps.parts`) for the tab's one event a move, with the click (`PathSteps.moves`)."""
    hidden = dict(concurrency_limit=None, show_progress="hidden", **PRIVATE)
    draw = dict(fn=handlers.compare_map, inputs=[comparison, position, align], outputs=[view.map])
    part = dict(fn=handlers.compare_parting, inputs=[comparison, view.against, align],
                outputs=[view.plot, view.note], **hidden)
    finished.then(handlers.compare_finished, comparison, view.against, **hidden).then(**draw, **hidden).then(**part)
    for trigger in (view.against.input, align.change):
        trigger(**part)
    clicked_map = view.map.select(handlers.compare_click, [comparison, align], position, **hidden)
    return PathSteps((draw,), (clicked_map,))


def _word_key(item: dict) -> str:
    """A ranked token as the list names it: the word and its slot (a word may come twice), a negative one marked."""
    key = f"{item['word']} · {item['index']}"
    return f"{NEGATIVE_MARK} {key}" if item["negative"] else key


class PathHandlers:
    def __init__(self, session):
        self.session, self.threads, self.files = session, session.threads, session.files

    # --- the map ------------------------------------------------------------------------------

    @staticmethod
    def _runs(traj, parent) -> tuple[list, list[str]]:
        """The run, and its parent when it is a fork of it: drawn in one projection."""
        if parent is not None and traj.settings.forked_from is not None and parent.steps:
            return [traj, parent], [text("plot.fork"), text("plot.parent")]
        return [traj], [text("path.this_run")]

    def _picture(self, traj, parent, index: int):
        runs, labels = self._runs(traj, parent)
        return map_picture(trajectory_map(runs), labels, marked=(0, index))

    @user_errors
    def map_view(self, traj, parent, step):
        if traj is None or not traj.steps:
            return None
        picture, _ = self.threads.call(self._picture, traj, parent, step_index(traj, step))
        return self.files.image(np.asarray(picture))

    @user_errors
    def map_click(self, traj, parent, event: gr.EventData):
        """The step of the point nearest to the click (a parent's point: the same step of this run)."""
        if traj is None or not traj.steps:
            return gr.skip()
        picture, where = self.threads.call(self._picture, traj, parent, 0)
        x, y = clicked(event, picture.size[1], picture.size[0], enlarged=False)
        _, _, index = nearest(where, x, y)
        return min(index, len(traj.steps) - 1) + 1

    # --- words for a region -------------------------------------------------------------------

    def _ranked(self, traj, index: int, span, box) -> dict:
        check_choice("steps", span, SPANS)
        ranked = region_words(traj, index, box, PATH_SPANS[span])
        return {_word_key(item): round(item["share"], 4) for item in ranked}

    @user_errors
    def region(self, traj, step, span, event: gr.EventData):
        """The words ranked for the box around the clicked pixel of x0, at this step (or up to it, or the run)."""
        if traj is None or not traj.steps:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        index = step_index(traj, step)
        check_choice("steps", span, SPANS)
        if traj.attention is None:
            raise InputError.said("error.words_no_attention")
        height, width = traj.attention.image_hw
        x, y = clicked(event, height, width)  # x0 is sent enlarged: ui.clicks
        half_w, half_h = max(1, width // (2 * REGION_SHARE)), max(1, height // (2 * REGION_SHARE))
        box = (max(0, x - half_w), max(0, y - half_h), min(width, x + half_w), min(height, y + half_h))
        ranked = self.threads.call(self._ranked, traj, index, span, box)
        return ranked, None, self._note(box, index), box

    @user_errors
    def region_again(self, traj, step, span, box):
        """The same region's words at the slider's new step (or span)."""
        if traj is None or not traj.steps:
            return gr.skip(), gr.skip()
        index = step_index(traj, step)
        check_choice("steps", span, SPANS)
        if box is None or traj.attention is None:
            return gr.skip(), gr.skip()
        return self.threads.call(self._ranked, traj, index, span, box), self._note(box, index)

    @staticmethod
    def _note(box, index: int) -> str:
        return text("path.words_box", x0=box[0], y0=box[1], x1=box[2], y1=box[3], step=index + 1)

    @user_errors
    def word_heat(self, traj, step, span, box, event: gr.EventData):
        """The clicked word's attention map over this step's x0, the region outlined."""
        if traj is None or not traj.steps:
            return gr.skip()
        index = step_index(traj, step)
        check_choice("steps", span, SPANS)
        if box is None or traj.attention is None:
            return gr.skip()
        data = getattr(event, "_data", None)
        chosen = data.get("value") if isinstance(data, dict) else None
        return self.threads.call(self._word_heat, traj, index, span, box, chosen)

    def _word_heat(self, traj, index, span, box, chosen):
        ranked = region_words(traj, index, box, PATH_SPANS[span] if span in SPANS else "step")
        keys = {_word_key(item): item for item in ranked}
        check_choice("word", chosen, list(keys))
        item = keys[chosen]
        maps = traj.attention.negative if item["negative"] else traj.attention
        steps = span_steps(span, index)
        x0_image = traj.step_frames(index, self.session.decoder(traj))[1]
        picture = overlay(x0_image, maps.heat_map(item["index"], steps=steps))
        x0, y0, x1, y1 = box
        picture[y0, x0:x1] = picture[y1 - 1, x0:x1] = picture[y0:y1, x0] = picture[y0:y1, x1 - 1] = 255
        return self.files.image(clickable(picture))

    # --- the Compare tab ------------------------------------------------------------------------

    @user_errors
    def compare_finished(self, comparison):
        if comparison is None or len(comparison.trajectories) < 2:
            return gr.skip()
        choices = [(f"{number}: {label}", number) for number, label in enumerate(comparison.labels, 1)]
        return gr.update(choices=choices, value=1)

    def _compare_picture(self, comparison, position: float, by: str):
        """(picture, where, the variants drawn): the map of the variants that ran (`Comparison.ran_map`)."""
        ran = comparison.ran_map()
        if ran is None:
            return None, [], []
        indices, mapped = ran
        drawn = [comparison.trajectories[k] for k in indices]
        marked = (0, at(drawn[:1], position, by)[0])
        labels = [f"{k + 1}: {comparison.labels[k]}" for k in indices]
        return *map_picture(mapped, labels, marked=marked), drawn

    @user_errors
    def compare_map(self, comparison, position, align):
        by = check_alignment(align)
        where = check_int("position", position, 0, 100) / 100
        if comparison is None or not comparison.trajectories:
            return gr.skip()
        picture, _, _ = self.threads.call(self._compare_picture, comparison, where, by)
        return None if picture is None else self.files.image(np.asarray(picture))

    @user_errors
    def compare_click(self, comparison, align, event: gr.EventData):
        """The shared position of the point nearest to the click, in its variant's own run."""
        by = check_alignment(align)
        if comparison is None or not comparison.trajectories:
            return gr.skip()
        picture, where, drawn = self.threads.call(self._compare_picture, comparison, 1.0, by)
        if picture is None:
            return gr.skip()
        x, y = clicked(event, picture.size[1], picture.size[0], enlarged=False)
        run, _, index = nearest(where, x, y)
        return round(100 * positions(drawn, by)[run][index])

    @user_errors
    def compare_parting(self, comparison, against, align):
        """Each variant's x0 difference from the chosen one over the shared position, and where each parts."""
        by = check_alignment(align)
        against = check_int("against variant", against, 1, len(comparison.trajectories) if comparison else MAX_VARIANTS)
        if comparison is None or len(comparison.trajectories) < 2:
            return gr.skip(), gr.skip()
        return self.threads.call(self._compare_parting, comparison, against - 1, by)

    def _compare_parting(self, comparison, reference: int, by: str):
        rows, lines = [], []
        base = comparison.trajectories[reference]
        lined = replace(comparison, by=by, previewers=[self.session.decoder(t) for t in comparison.trajectories])
        for number, (traj, label) in enumerate(zip(comparison.trajectories, comparison.labels), 1):
            if number - 1 == reference or not traj.steps or not base.steps:
                continue
            result = lined.parting(reference, number - 1)  # the library's, with the session's decoders
            total = len(result["x0"])
            rows += [(100 * k / max(total - 1, 1), value, f"{number}: {label}") for k, value in enumerate(result["x0"])]
            if result["parted_at"] is None:
                lines.append(text("path.never_parts", number=number, label=label, against=reference + 1,
                                  threshold=PARTED))
            else:
                lines.append(text("path.parts", number=number, label=label, against=reference + 1,
                                  step=result["parted_at"], total=total, threshold=PARTED))
        return pd.DataFrame(rows, columns=["position", "value", "variant"]), "\n\n".join(lines)


def fork_parting(parent, fork, decoders) -> tuple[pd.DataFrame, str]:
    """The fork's x0 difference from its parent per step (a plot's rows: step, value, curve), and the sentence
    saying where it parts (or that it never does)."""
    result = parting(parent, fork, decoders)
    rows = pd.DataFrame([(k + 1, value, text("plot.x0_difference")) for k, value in enumerate(result["x0"])],
                        columns=["step", "value", "curve"])
    if result["parted_at"] is None:
        return rows, text("path.fork_never", threshold=PARTED)
    return rows, text("path.fork_parts", step=result["parted_at"], threshold=PARTED)
