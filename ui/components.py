"""The input widgets, passing what they are sent to the handlers untouched.

gradio's own input checks answer without the parameter's name ("Value 0 is less
than minimum value 1."), let NaN, booleans and lists through, round numbers
silently, and decode every uploaded image with PIL before any size limit is
applied. These subclasses keep gradio's widgets as they look and behave in the
page (the class names are the same, so the page draws them the same) but hand
the value on as sent, so one place, the core's checks, answers every bad value
with its parameter, the value and what is allowed, in the page and over the API.
"""

from __future__ import annotations

import gradio as gr


class AsSent:
    """Hands the value on as the request sent it (put before gradio's widget class)."""

    def preprocess(self, payload):
        return payload


class Slider(AsSent, gr.Slider):
    pass


class Radio(AsSent, gr.Radio):
    pass


class Dropdown(AsSent, gr.Dropdown):
    pass


class Number(AsSent, gr.Number):
    pass


class Textbox(AsSent, gr.Textbox):
    """Text as sent: an object sent for a text field reaches the check as the object, not as its str()."""


class Checkbox(AsSent, gr.Checkbox):
    pass


class Image(gr.Image):
    """An uploaded image as its file path, not decoded here: `sdviz.sampling.images` reads its size first."""

    def preprocess(self, payload):
        return None if payload is None else payload.path


def takes_values_as_sent(component) -> bool:
    """Whether an event input hands its value on untouched (or holds the session's state, which no
    request can set)."""
    return isinstance(component, (AsSent, Image, gr.State))
