"""The page's words in the reader's language: English, Chinese or Japanese, from sdviz's message catalogue.

The page is built with the catalogue's English (`say`); each session then gets it in its own language, the
browser's (its Accept-Language: zh-* Chinese, ja* Japanese, anything else English) until the reader picks
another with the switch at the top. `Words.relabel` finds the page's catalogue texts by their English and
sends each in the session's language, when the page loads and when the switch moves. What the server
writes afterwards (status lines, notes, the walk) follows the same choice: `session_language` answers the
catalogue (`sdviz.messages.current`) for the request being served, so two readers on one server in two
languages each read their own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import gradio as gr

from sdviz.messages import DEFAULT, LANGUAGES, key_of, language_of, set_resolver, speaking, text

TEXT_FIELDS = ("label", "value", "info", "title", "placeholder", "x_title", "y_title", "color_title")  # text a
# reader reads
MOST_SESSIONS = 10000  # sessions whose choice is remembered (the oldest forgotten first)
_chosen: OrderedDict[str, str] = OrderedDict()  # session -> the language it picked with the switch
_chosen_lock = threading.Lock()


def say(key: str, **fields) -> str:
    """The catalogue's English for `key`: what the page is built with (each session's language replaces it)."""
    return text(key, DEFAULT, **fields)


def session_language(request=None) -> str:
    """The language of the session `request` (default: the request being served) is read in: the one it
    picked, else its browser's; English for a call with no request (a script, a test)."""
    if request is None:
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
    if request is None:
        return DEFAULT
    with _chosen_lock:
        chosen = _chosen.get(getattr(request, "session_hash", None) or "")
    if chosen:
        return chosen
    headers = getattr(request, "headers", None) or {}
    return language_of(headers.get("accept-language"))


def choose(session: str, language: str) -> None:
    """`session` reads `language` from now on."""
    with _chosen_lock:
        _chosen[session] = language
        _chosen.move_to_end(session)
        while len(_chosen) > MOST_SESSIONS:
            _chosen.popitem(last=False)


def listen() -> None:
    """Makes the catalogue answer in the language of the request being served (once, when the page is built)."""
    set_resolver(session_language)


class Words:
    """The page's texts that come from the catalogue, found by their English once the page is built."""

    def __init__(self, blocks: gr.Blocks):
        self.placed: list[tuple] = []  # (component, {field: key}, its choices as ((key, fields) or label, value))
        for block in blocks.blocks.values():
            menu = getattr(block, "choices", None) is not None  # a menu's value is a choice made, not text to read
            fields = {field: said[0] for field in TEXT_FIELDS if not (menu and field == "value")
                      and (said := key_of(getattr(block, field, None)))}
            choices = self._choices(block)
            colours = getattr(block, "color_map", None)
            if isinstance(colours, dict) and any(key_of(name) for name in colours):
                fields["color_map"] = {(said[0],) if (said := key_of(name)) else name: colour
                                       for name, colour in colours.items()}
            if fields or choices:
                self.placed.append((block, fields, choices))

    @staticmethod
    def _choices(block) -> list | None:
        """A menu's choices whose labels are the catalogue's ('sdviz-objects (default)' included), or None."""
        choices = getattr(block, "choices", None)
        if not isinstance(choices, list) or not all(isinstance(c, tuple) and len(c) == 2 for c in choices):
            return None
        marked = [(key_of(label, exact=False) or label, value) for label, value in choices]
        return marked if any(isinstance(key, tuple) for key, _ in marked) else None

    @property
    def components(self) -> list:
        return [block for block, _, _ in self.placed]

    def relabel(self, language: str) -> list:
        """Each placed component's texts in `language`, as updates in `components` order."""
        updates = []
        with speaking(language):
            for _, fields, choices in self.placed:
                update = {field: text(key) for field, key in fields.items() if field != "color_map"}
                if "color_map" in fields:  # a plot's colours, keyed by its curves' names in the language
                    update["color_map"] = {text(key[0]) if isinstance(key, tuple) else key: colour
                                           for key, colour in fields["color_map"].items()}
                if choices:
                    update["choices"] = [(text(key[0], **key[1]) if isinstance(key, tuple) else key, value)
                                         for key, value in choices]
                updates.append(gr.update(**update))
        return updates


def switch() -> gr.Radio:
    """The visible language switch, in each language's own name."""
    from ui import components

    return components.Radio([(name, code) for code, name in LANGUAGES.items()], value=None, label=say("lang.switch"),
                            show_label=False, container=False, elem_id="language")
