"""The app's error policy: bad input is the user's message, anything else a logged failure.

Every value a handler takes is checked (by sdviz or the session), whoever sent it: the page, the API,
or a hand-made request to an event the page uses. A refusal (`sdviz.InputError`) is answered with one
message naming the parameter, the value and what is allowed, logged as one line without a traceback;
a real failure is logged with its traceback and answered with one line that shows nothing of the server.
"""

from __future__ import annotations

import functools
import html as html_text
import inspect
import logging

import gradio as gr

from sdviz.sampling.errors import InputError

log = logging.getLogger("sdviz.app")


def user_errors(fn):
    """A refusal of bad input (`sdviz.InputError`, raised by sdviz or the app) becomes gr.Error, shown in the
    page and returned over the API, and logged as one line; anything else is logged with its traceback
    server-side and answered with one line that shows nothing of the server. The server keeps serving."""

    def convert(error: Exception) -> gr.Error:
        if isinstance(error, InputError):
            log.info("refused %s: %s", fn.__name__, error)
            return gr.Error(html_text.escape(str(error), quote=False), print_exception=False)
        log.error("handler %s failed", fn.__name__, exc_info=error)
        return gr.Error(f"the request failed ({type(error).__name__}); the server logged the details",
                        print_exception=False)

    target = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(target):
        @functools.wraps(fn)
        async def follow_async(*args, **kwargs):
            try:
                async for update in fn(*args, **kwargs):
                    yield update
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - converted for the user, logged above
                raise convert(error) from None
        return follow_async

    if inspect.iscoroutinefunction(target):
        @functools.wraps(fn)
        async def call_async(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001
                raise convert(error) from None
        return call_async

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001
            raise convert(error) from None
    return call
