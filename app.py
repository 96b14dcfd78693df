"""sdviz web app: `python app.py` opens the page on the embedded model.

Settings come from the environment (see ui/config.py and the README's table):
the models offered, the queue, and the limits one request may ask for. The host
and port follow gradio's GRADIO_SERVER_NAME and GRADIO_SERVER_PORT.
"""

import functools
import logging
import os
import tempfile
from pathlib import Path

# gradio's cache (uploads, and its copies of the files handlers return) goes in a folder of
# this process's own, which the app prunes and removes at exit, unless the host names one.
OWN_GRADIO_CACHE = None
if not os.environ.get("GRADIO_TEMP_DIR"):
    OWN_GRADIO_CACHE = Path(tempfile.mkdtemp(prefix="sdviz-gradio-"))
    os.environ["GRADIO_TEMP_DIR"] = str(OWN_GRADIO_CACHE)

from sdviz.sampling.cache import ModelCache  # noqa: E402 - after GRADIO_TEMP_DIR is set
from sdviz.sampling.loras import adapted  # noqa: E402
from sdviz.sampling.models import load_model  # noqa: E402
from ui import html  # noqa: E402
from ui.config import AppConfig  # noqa: E402
from ui.errors import http_errors  # noqa: E402
from ui.files import FileStore, exit_on_sigterm  # noqa: E402
from ui.layout import build_demo  # noqa: E402
from ui.model_threads import ModelThreads  # noqa: E402
from ui.session import Session  # noqa: E402


def create_app():
    config = AppConfig.from_env()
    files = FileStore(config.cache_seconds, config.cache_mb * 1024 * 1024,
                      also_owned=[OWN_GRADIO_CACHE] if OWN_GRADIO_CACHE else [])
    threads = ModelThreads(config.concurrency)  # all torch work, loading included, on these threads
    cache = ModelCache(config.device, most=config.max_models, pinned=config.default_model,
                       load=functools.partial(threads.call, load_model),
                       adapt=functools.partial(threads.call, adapted))
    session = Session(config, cache, files, threads)
    demo = build_demo(config, session)
    demo.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    return demo, config


demo, CONFIG = create_app()
API_NAMES = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    exit_on_sigterm()
    demo.launch(css=html.CSS, footer_links=["api", "gradio"], max_file_size=CONFIG.limits.upload_bytes,
                app_kwargs={"exception_handlers": http_errors(API_NAMES)})
