"""The page's inputs by name, defined once: each widget's value reaches a handler as the keyword argument
of its name, never by its place in a list.

A run's names are `Settings`' field names (prompt, negative_prompt, scheduler, steps, ...) plus `model`,
`attention` and `init_image`; the handlers take them as keywords (`Handlers.stream(stop_signal, **run)`).
`Form.bind` hands gradio the widgets of an event and a function that calls the handler with each
value under its name: a widget added, removed or moved cannot shift the others.
"""

from __future__ import annotations

import inspect
from dataclasses import fields

from sdviz.sampling.settings import Settings

RUN_NAMES = frozenset({f.name for f in fields(Settings)} | {"model", "attention", "init_image"})


class Form:
    def __init__(self, **widgets):
        self.widgets = widgets  # name -> gradio component

    def bind(self, handler, *names: str, **widgets) -> dict:
        """gradio's `fn` and `inputs` for `handler`: the form's widgets `names`, and `widgets` (name ->
        component) for this event's own (the Edit tab's prompt, say). Use as `event(**form.bind(...), ...)`.
        `fn.names` are the names in the order of `inputs`, the order the page sends their values in."""
        named = {**{name: self.widgets[name] for name in names}, **widgets}
        order = tuple(named)
        parameters = inspect.signature(handler).parameters
        takes_run = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        unknown = [n for n in order if n not in parameters and not (takes_run and n in RUN_NAMES)]
        if unknown:
            raise TypeError(f"{handler.__qualname__} takes no {', '.join(unknown)}")

        def keywords(values: tuple) -> dict:
            return dict(zip(order, values, strict=True))

        if not inspect.isasyncgenfunction(inspect.unwrap(handler)):
            raise TypeError(f"{handler.__qualname__} is not an async generator: the page's runs stream")

        async def fn(*values):
            async for update in handler(**keywords(values)):
                yield update
        fn.__name__, fn.__qualname__, fn.__doc__ = handler.__name__, handler.__qualname__, handler.__doc__
        fn.names = order
        return {"fn": fn, "inputs": list(named.values())}
