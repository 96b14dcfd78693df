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


class Slider(gr.Slider):
    def preprocess(self, payload):
        return payload


class Radio(gr.Radio):
    def preprocess(self, payload):
        return payload


class Dropdown(gr.Dropdown):
    def preprocess(self, payload):
        return payload


class Image(gr.Image):
    """An uploaded image as its file path, not decoded here: `sdviz.sampling.images` reads its size first."""

    def preprocess(self, payload):
        return None if payload is None else payload.path
