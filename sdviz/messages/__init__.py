"""The message catalogue: every sentence sdviz writes for a reader, in English, Chinese and Japanese.

One JSON file per language (`en.json`, `zh.json`, `ja.json` beside this module), each mapping a key to
a message with named placeholders (`{steps}`); a fourth language is a new file and an entry in LANGUAGES.
The terms the translations use are in `glossary.md`. Model names, tensor shapes, prompts, tokens and the
symbols (x_t, x0, σ, ᾱ, ε) stay as they are in every language.

    text("run.finished", steps=20)              # in the current language
    with speaking("ja"): ...                    # the library writes Japanese inside
    language_of("zh-CN,zh;q=0.9,en;q=0.8")      # 'zh'

The current language is a context variable (`speaking`), so concurrent requests in different languages
each write their own; where none is set, a host (the app) may answer from its request (`set_resolver`).
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LANGUAGES = {"en": "English", "zh": "简体中文", "ja": "日本語"}  # code -> the language's own name
DEFAULT = "en"
FOLDER = Path(__file__).resolve().parent
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("sdviz_language", default=None)
_resolver: list[Callable[[], str | None]] = []  # the host's: the language of the request being served
_FIELD = re.compile(r"{(\w+)(?:[:!][^}]*)?}")


@functools.cache
def catalogue(language: str) -> dict[str, str]:
    """The language's messages by key (read once)."""
    return json.loads((FOLDER / f"{language}.json").read_text(encoding="utf-8"))


def placeholders(message: str) -> set[str]:
    """The named fields a message takes."""
    return set(_FIELD.findall(message))


def current() -> str:
    """The language sdviz writes in now: the one `speaking` set, else the host's answer, else English."""
    chosen = _current.get()
    if chosen is None and _resolver:
        chosen = _resolver[0]()
    return chosen if chosen in LANGUAGES else DEFAULT


@contextmanager
def speaking(language: str | None) -> Iterator[str]:
    """Inside, sdviz writes in `language` (None: as before)."""
    token = _current.set(language if language in LANGUAGES else _current.get())
    try:
        yield current()
    finally:
        _current.reset(token)


def set_resolver(resolver: Callable[[], str | None] | None) -> None:
    """The host's way to tell the language of the request being served, where `speaking` set none."""
    _resolver.clear()
    if resolver is not None:
        _resolver.append(resolver)


def text(key: str, language: str | None = None, **fields) -> str:
    """The message `key` in `language` (default: the current one), its placeholders filled from `fields`."""
    message = catalogue(language or current()).get(key)
    if message is None:
        message = catalogue(DEFAULT)[key]  # a key missing from a translation: the test of the catalogue fails
    return message.format(**fields) if fields else message


@functools.cache
def _english() -> tuple[dict[str, str], tuple]:
    """English text -> its key (the first, where several keys say the same), and (pattern, key, field) for each
    message of one placeholder with at least 8 other characters ('{name} (default)')."""
    exact, templates = {}, []
    for key, message in catalogue(DEFAULT).items():
        fields = placeholders(message)
        if not fields:
            exact.setdefault(message, key)
        elif len(fields) == 1 and len(_FIELD.sub("", message)) >= 8:
            head, _, tail = _FIELD.split(message, maxsplit=1)  # the text around the placeholder (its name between)
            templates.append((re.compile(re.escape(head) + "(.+)" + re.escape(tail) + r"\Z", re.S), key, *fields))
    return exact, tuple(templates)


def key_of(english: str, exact: bool = True) -> tuple[str, dict] | None:
    """(key, fields) of a text written in the catalogue's English: the key whose message it is (with `exact`
    False, also a message of one placeholder, and that placeholder's value); None for any other text."""
    if not isinstance(english, str):
        return None
    words, templates = _english()
    if english in words:
        return words[english], {}
    if not exact:
        for pattern, key, field in templates:
            match = pattern.match(english)
            if match:
                return key, {field: match.group(1)}
    return None


def language_of(header: str | None) -> str:
    """The language for an Accept-Language header (or a browser's locale): zh-* Chinese, ja* Japanese, by the
    order of preference the header gives; anything else English."""
    ranked = []
    for index, part in enumerate((header or "").split(",")):
        code, _, quality = part.strip().partition(";q=")
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((-weight, index, code.strip().lower()))
    for _, _, code in sorted(ranked):
        base = code.split("-")[0]
        if base in LANGUAGES:
            return base
    return DEFAULT
