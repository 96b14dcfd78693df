"""Shared fixtures: the embedded model, and tiny random SD pipelines built from configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import sdviz
from sdviz.sampling.models import SHAPES_MODEL

TOKENIZER = SHAPES_MODEL / "tokenizer"

if os.environ.get("PYTEST_XDIST_WORKER"):  # tests split over workers: one core each, for them and their servers
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def default():
    """The default model (the embedded object model, or $SDVIZ_MODEL), loaded once: what the app serves."""
    return sdviz.load_model()


@pytest.fixture(scope="session")
def embedded():
    """The embedded shapes model, loaded once: the tests that read what a run drew use its analyser
    (`training.scenes`), and it is the fastest model that is not random."""
    return sdviz.load_model(str(SHAPES_MODEL))


def build_tiny_pipeline(folder: Path, prediction_type: str = "epsilon", scaling_factor: float = 0.5) -> Path:
    """A random-weight SD pipeline: 2-level UNet with cross-attention, VAE factor 2, 2-layer CLIP."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=16,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=16,
        sample_size=16, scaling_factor=scaling_factor,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    scheduler = PNDMScheduler.from_config(dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type=prediction_type, steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False,
        clip_sample=False,
    ))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(TOKENIZER), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_v_model(tmp_path_factory):
    """A v-prediction model (as SD 2.x 768 is), random weights."""
    return sdviz.load_model(str(build_tiny_pipeline(tmp_path_factory.mktemp("tiny-v"), "v_prediction")))


@pytest.fixture(scope="session")
def tiny_sd1_vae_model(tmp_path_factory):
    """A random model whose VAE has SD 1.x's scaling factor, so the published preview map applies."""
    return sdviz.load_model(str(build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd1"), scaling_factor=0.18215)))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """`python app.py` launched as a user launches it, on a free local port, with its own temp folder (`script`:
    another launcher of the app, such as benchmarks/timeline.py)."""

    def __init__(self, tmp: Path, script: str = "app.py", **env: str):
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        root = Path(__file__).resolve().parent.parent
        self.port = free_port()
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                    "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])), **env}
        for name in ("SDVIZ_ALLOW_CUSTOM_MODELS", "GRADIO_TEMP_DIR"):
            if name not in env:
                full_env.pop(name, None)
        self.log_path = tmp.parent / f"{tmp.name}-app.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - the server's stdout until stop() closes it
        self.process = subprocess.Popen([sys.executable, script], cwd=root, env=full_env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            self.process.kill()
            raise RuntimeError("app.py did not start within 120 s")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        import os

        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """The server's resident memory now (VmRSS), or its peak so far (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field}")

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.tmp.rglob("*") if p.is_file())

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        """Stops the server (again: nothing)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()


def chromium(profile: Path, performance_log: bool = False, language: str | None = None):
    """Debian's headless Chromium, driven by chromium-driver; `performance_log` keeps the network events;
    `language` (zh-CN, ja, en-US) is the browser's own, its Accept-Language and navigator.language."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1400,1900"):
        options.add_argument(flag)
    if language:
        options.add_argument(f"--lang={language}")
        options.add_experimental_option("prefs", {"intl.accept_languages": language})
    if performance_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)



def post_json(url: str, body: str, **headers: str) -> tuple[int, str]:
    """POSTs `body` as JSON, as a page or a hostile client would (with `headers`, `Accept_Language=...` for
    Accept-Language); the status and the text answered, errors too."""
    import urllib.error
    import urllib.request

    sent = {"Content-Type": "application/json", **{name.replace("_", "-"): value for name, value in headers.items()}}
    request = urllib.request.Request(url, data=body.encode(), headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()

def open_page(url: str, profile: Path, language: str | None = None):
    """Chromium on the app's page (in the browser's `language`), once its Generate button is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium(profile, language=language)
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate"))
    return driver


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory):
    """Tiny random-weight SDXL, SD3 and Flux pipeline folders (tests/families.py), built once."""
    from tests.families import BUILDERS

    return {name: build(tmp_path_factory.mktemp(f"tiny-{name}")) for name, build in BUILDERS.items()}


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, family_dirs):
    """The app as launched by `python app.py`, shared by the API, hosting and browser tests: the embedded model
    by default, and the tiny SDXL, SD3 and Flux folders offered too (SDVIZ_MODELS), as a Space would list them."""
    server = AppServer(tmp_path_factory.mktemp("app-tmp"), SDVIZ_MODELS=",".join(map(str, family_dirs.values())))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_url(app_server):
    return app_server.url


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    """Where the browser tests' screenshots go: $SDVIZ_SCREENSHOTS (docs/screenshots refreshes the README's)."""
    import os

    folder = Path(os.environ.get("SDVIZ_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def session():
    """The app's session service in process (ui.session), on the embedded model, with its own file store."""
    from sdviz.sampling.cache import ModelCache
    from ui.config import AppConfig
    from ui.files import FileStore
    from ui.session import Session

    config = AppConfig(default_model=str(SHAPES_MODEL), models=(str(SHAPES_MODEL),))
    files = FileStore(600, 2**30)
    yield Session(config, ModelCache(None, most=1, pinned=str(SHAPES_MODEL)), files)
    files.remove()


@pytest.fixture(scope="session")
def runner(session):
    """The run column's handlers (ui.tabs.run): the page's runs, streamed as the page streams them."""
    from ui.tabs.run import RunHandlers

    return RunHandlers(session)
