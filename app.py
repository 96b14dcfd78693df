"""sdviz web app: `python app.py` opens the page on the embedded model.

Settings come from the environment (see ui/config.py): SDVIZ_MODEL,
SDVIZ_MODELS, SDVIZ_ALLOW_CUSTOM_MODELS, SDVIZ_QUEUE_SIZE, SDVIZ_CONCURRENCY,
SDVIZ_DEVICE, SDVIZ_CACHE_SECONDS; the host and port follow gradio's
GRADIO_SERVER_NAME and GRADIO_SERVER_PORT.
"""

import logging

from sdviz.models import ModelCache
from ui import html
from ui.config import AppConfig
from ui.handlers import Handlers
from ui.layout import build_demo


def create_app():
    config = AppConfig.from_env()
    handlers = Handlers(config, ModelCache(config.device))
    demo = build_demo(config, handlers)
    demo.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    return demo


demo = create_app()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    demo.launch(css=html.CSS, footer_links=["api", "gradio"])
