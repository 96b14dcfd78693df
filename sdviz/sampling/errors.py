"""The one error sdviz raises for bad input.

Every check in the library raises `InputError` with the parameter, the value and what is allowed
("steps 0 is out of range; allowed: 1..1000"). It is a `ValueError`, so code that caught
ValueError still does; the CLI prints it as one line and the app shows it as a message, while any
other exception is a failure, reported as one.
"""

from __future__ import annotations

from typing import Any

from sdviz.messages import text


class InputError(ValueError):
    """Bad input: the message names the parameter, the value and what is allowed."""

    @classmethod
    def said(cls, key: str, **fields) -> InputError:
        """The refusal `key` of the message catalogue, in the current language (`sdviz.messages`)."""
        return cls(text(key, **fields))


def shortened(value: Any, most: int = 60) -> str:
    """A bad value as an error message shows it: repr, shortened (a huge int is not even turned into digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return text("error.huge_integer", bits=value.bit_length())
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > most:
        value = value[:most]  # repr of a part: a million-character value is not copied whole
    elif isinstance(value, dict) and len(value) > most:
        value = dict(list(value.items())[:most])
    shown = repr(value)
    return shown if len(shown) <= most else shown[: most - 3] + "..."


def listed(allowed, most: int = 12) -> str:
    """The allowed values as a message lists them: the first `most`, then how many more."""
    allowed = [str(a) for a in allowed]
    more = text("error.and_more", count=len(allowed) - most) if len(allowed) > most else ""
    return ", ".join(allowed[:most]) + more
