"""What the tabs share, handed from one tab's builder to the next: the session's states, the step
slider, the run's inputs by name, and how a run is started (armed by the page's script, then queued).
Also the event options every tab's events use.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ui import html
from ui.form import Form

PRIVATE = {"api_visibility": "private"}  # the page's own events: not offered as API endpoints
AGAIN = {"trigger_mode": "multiple"}  # pressed again during a run: that run stops, the new one is queued
# The form's names every run takes; all runs but Compare's add "attention".
RUN_WIDGETS = ("stop_signal", "prompt", "negative_prompt", "model", "scheduler", "steps", "guidance", "seed",
               "width", "height", "eta", "preview", "every")


class Joined:
    """Several handlers as one event: their inputs once each, their outputs in turn, as an event's keyword
    arguments (`event(**joined.event)`). One event a slider move instead of one a panel: every message of
    every event costs the page a walk of the components events have touched (gradio's loading states)."""

    def __init__(self, *parts: dict):
        self.parts = parts
        self.inputs: list = []
        for part in parts:
            self.inputs += [c for c in part["inputs"] if not any(c is known for known in self.inputs)]
        self.places = [[self.place(c) for c in part["inputs"]] for part in parts]
        self.outputs = [c for part in parts for c in part["outputs"]]

    def __call__(self, *values):
        answers = []
        for part, places in zip(self.parts, self.places):
            answer = part["fn"](*[values[n] for n in places])
            answers += answer if len(part["outputs"]) > 1 else [answer]
        return tuple(answers)

    def place(self, component) -> int:
        """Where `component` is among the inputs."""
        return next(n for n, known in enumerate(self.inputs) if known is component)

    @property
    def event(self) -> dict:
        return dict(fn=self, inputs=self.inputs, outputs=self.outputs)


def refused() -> str:
    """The status after a run was refused (the message says why): the page is ready again."""
    return html.status()


@dataclass
class States:
    """The session's state, one `gr.State` each."""

    trajectory: gr.State  # the session's run (sdviz Trajectory): every tab shows it
    comparison: gr.State  # the session's comparison (sdviz.workflows.compare.Comparison)
    parent: gr.State  # the run the shown one was forked from (an inversion: the inversion)
    written: gr.State  # the run's download files, once asked for
    opened: gr.State  # the explaining tabs this session opened: drawn again after each run

    @classmethod
    def create(cls) -> States:
        return cls(gr.State(None), gr.State(None), gr.State(None), gr.State(None), gr.State([]))


@dataclass
class Shared:
    """What more than one tab reads or writes."""

    states: States
    form: Form  # the run's widgets by name (ui.form)
    status: gr.HTML  # the run's status line
    step: gr.Slider  # the step every panel below the run shows
    concurrency: int  # requests admitted to the model at once (ui.config.AppConfig.admitted)

    @property
    def queued(self) -> dict:
        """The options of an event that runs the model: queued on the model's concurrency."""
        return dict(concurrency_limit=self.concurrency, concurrency_id="model", show_progress="hidden", **PRIVATE)

    def start(self, button: gr.Button, handler, *names: str, outputs: list, **widgets) -> gr.events.Dependency:
        """`button` starts a run of `handler` with the form's widgets `names` and this event's own `widgets`.

        As it is pressed the page's script arms the run (`ui.session.Arming`: the session's earlier run stops,
        Stop reaches this one queued or running) and the run's request carries its token ("stop_signal"), with
        no event of its own before the run's. A stopped run still finishes (its partial trajectory, attention
        maps and downloads)."""
        bound = self.form.bind(handler, *names, **widgets)
        place = next(n for n, c in enumerate(bound["inputs"]) if c is self.form.widgets["stop_signal"])
        return button.click(**bound, outputs=outputs, js=html.arm_js(place), **self.queued, **AGAIN)
