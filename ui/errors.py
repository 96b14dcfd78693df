"""The app's error policy: bad input is the user's message, anything else a logged failure.

Every value a handler takes is checked (by sdviz or the session), whoever sent it: the page, the API,
or a hand-made request to an event the page uses. A refusal (`sdviz.InputError`) is answered with one
message naming the parameter, the value and what is allowed, logged as one line without a traceback;
a real failure is logged with its traceback and answered with one line that shows nothing of the server.

Every event's handler is under this policy (`user_errors`; `guarded` tells), and so is what gradio does
with a request before a handler sees it (`Page`): a request with the wrong number of values, or a file
value that is not a file this server was sent, is refused by name too.

The page draws a message as HTML (sanitised by gradio), so a message is HTML-escaped for the page only:
an API client gets the words as written (`strength >= 0.25`, not `strength &gt;= 0.25`).
"""

from __future__ import annotations

import functools
import html as html_text
import inspect
import logging

import gradio as gr
from gradio import processing_utils
from gradio.context import LocalContext

from sdviz.messages import text
from sdviz.sampling.errors import InputError, shortened

log = logging.getLogger("sdviz.app")
GUARD = "__sdviz_user_errors__"  # set on every handler under the policy


def for_reader(message: str) -> str:
    """`message` as the one who sent the request reads it: HTML-escaped for the page (its JS client sends
    `x-gradio-user: app` and draws messages as HTML), as written for everyone else."""
    request = LocalContext.request.get(None)
    headers = getattr(request, "headers", None) or {}
    return html_text.escape(message, quote=False) if headers.get("x-gradio-user") == "app" else message


def refusal(error: InputError, where: str) -> gr.Error:
    log.info("refused %s: %s", where, error)
    return gr.Error(for_reader(str(error)), print_exception=False)


def failure(error: Exception, where: str) -> gr.Error:
    log.error("handler %s failed", where, exc_info=error)
    return gr.Error(text("error.request_failed", kind=type(error).__name__), print_exception=False)


def converted(error: Exception, where: str) -> gr.Error:
    return refusal(error, where) if isinstance(error, InputError) else failure(error, where)


def user_errors(fn):
    """A refusal of bad input (`sdviz.InputError`, raised by sdviz or the app) becomes gr.Error, shown in the
    page and returned over the API, and logged as one line; anything else is logged with its traceback
    server-side and answered with one line that shows nothing of the server. The server keeps serving.
    Works on functions, coroutines and (async) generators alike."""
    target, name = inspect.unwrap(fn), getattr(fn, "__name__", "handler")

    if inspect.isasyncgenfunction(target):
        @functools.wraps(fn)
        async def guarded_fn(*args, **kwargs):
            try:
                async for update in fn(*args, **kwargs):
                    yield update
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - converted for the user, logged
                raise converted(error, name) from None
    elif inspect.isgeneratorfunction(target):
        @functools.wraps(fn)
        def guarded_fn(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001
                raise converted(error, name) from None
    elif inspect.iscoroutinefunction(target):
        @functools.wraps(fn)
        async def guarded_fn(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001
                raise converted(error, name) from None
    else:
        @functools.wraps(fn)
        def guarded_fn(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001
                raise converted(error, name) from None
    setattr(guarded_fn, GUARD, True)
    return guarded_fn


def guarded(fn) -> bool:
    """Whether `fn` (maybe wrapped again, by ZeroGPU's decorator, say) is under the policy."""
    while fn is not None:
        if getattr(fn, GUARD, False):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def value_names(block_fn) -> list[str]:
    """The names of an event's values, in the order the request sends them: the form's names
    (`ui.form.Form.bind`), else the handler's parameters (gradio passes values by position)."""
    fn = block_fn.fn
    names = getattr(fn, "names", None)
    if names is None:
        parameters = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in parameters]
    named = [name.replace("_", " ") for name in names]
    return named + [f"value {n + 1}" for n in range(len(named), len(block_fn.inputs))]


class Page(gr.Blocks):
    """The page's Blocks: what gradio checks of a request before a handler runs is answered under the
    policy too, by name. gradio answers these itself with no message (`{"error": null}`) or in its own
    words: too few values ("didn't receive enough input values", a traceback in the log), too many (ignored),
    a file value that is not a file (a pydantic dump), a file that was never uploaded here. And every event's
    handler is under the policy: those not decorated with `user_errors` (small lambdas that clear a panel,
    say) are wrapped when the page is built."""

    def __exit__(self, *args, **kwargs):
        super().__exit__(*args, **kwargs)
        for block_fn in self.fns.values():
            if block_fn.fn is not None and not guarded(block_fn.fn):
                block_fn.fn = user_errors(block_fn.fn)  # same kind (generator or not) and signature

    async def preprocess_data(self, block_fn, inputs, state, explicit_call: bool = False):
        if block_fn.fn is None:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        names = value_names(block_fn)
        try:
            if len(inputs) != len(block_fn.inputs):
                raise InputError.said("error.value_count", count=len(inputs), expected=len(block_fn.inputs),
                                      names=", ".join(names[:len(block_fn.inputs)]))
            for n, (name, block) in enumerate(zip(names, block_fn.inputs, strict=False)):
                inputs[n] = await check_file_value(name, block, inputs[n], explicit_call)
        except InputError as error:
            raise refusal(error, block_fn.name) from None
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001 - gradio's own preprocessing: a failure, one line
            raise failure(error, block_fn.name) from None


async def check_file_value(name: str, block, value, explicit_call: bool):
    """A file widget's value: none, or a file this server was sent (gradio's FileData, in its upload folder).

    gradio checks a file's path only when the value is marked as a file (`meta: {"_type": "gradio.FileData"}`,
    as the page sends it); a value without the mark would reach the widget with any path on the server's disk.
    Here every file value is marked, so gradio's own check (uploads only) applies to it; returns the value."""
    if getattr(block, "data_model", None) is None or value is None or block.stateful:
        return value
    allowed = text("error.allowed_uploaded_file")
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        raise InputError.said("error.not_a_file", name=name, value=shortened(value), allowed=allowed)
    value = {**value, "meta": {"_type": "gradio.FileData"}}
    try:
        await processing_utils.async_move_files_to_cache(value, block, check_in_upload_folder=not explicit_call)
    except Exception:  # noqa: BLE001 - gradio's path check (InvalidPathError) or FileData's validation
        raise InputError.said("error.not_uploaded", name=name, value=shortened(value["path"]),
                              allowed=allowed) from None
    return value


def http_errors(endpoints) -> dict:
    """FastAPI's exception handlers for what fails in gradio's routes before any event runs, answered in one
    line as `{"error": ...}` (gradio answers a plain "Internal Server Error", or FastAPI a dump of the body):
    a body that is not `{"data": [...]}`, an endpoint that does not exist (`endpoints`: the API's names),
    an event index that does not exist. Pass as `launch(app_kwargs={"exception_handlers": ...})`."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from gradio.route_utils import FnIndexInferError

    allowed = ", ".join(f"/{name}" for name in endpoints)

    async def malformed(request, error):
        first = (error.errors() or [{}])[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "body"
        log.info("refused %s %s: %s", request.method, request.url.path, first.get("msg"))
        reason = first["msg"] if "msg" in first else text("error.not_valid")
        return JSONResponse({"error": text("error.malformed_request", where=where, reason=reason)}, status_code=422)

    async def unknown(request, error):
        name = request.url.path.split("/call/", 1)[-1].split("/")[0]
        log.info("refused %s %s: no such endpoint", request.method, request.url.path)
        return JSONResponse({"error": text("error.no_endpoint", name=shortened("/" + name), allowed=allowed)},
                            status_code=404)

    async def failed(request, error):
        log.error("request %s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": text("error.request_failed", kind=type(error).__name__)}, status_code=500)

    return {RequestValidationError: malformed, FnIndexInferError: unknown, Exception: failed}
