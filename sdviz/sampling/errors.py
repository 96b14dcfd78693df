"""The one error sdviz raises for bad input.

Every check in the library raises `InputError` with the parameter, the value and what is allowed
("steps 0 is out of range; allowed: 1..1000"). It is a `ValueError`, so code that caught
ValueError still does; the CLI prints it as one line and the app shows it as a message, while any
other exception is a failure, reported as one.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message names the parameter, the value and what is allowed."""
