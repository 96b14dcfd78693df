"""Times the page against the core, in one run: what watching a run costs beyond the run itself.

    python benchmarks/benchmark_app.py            # every figure below, side by side
    python benchmarks/benchmark_app.py --write    # also record them in docs/BENCHMARKS.md

It launches `python app.py` as a user does (twice: on the embedded model, and on a
random-weight model with SD 1.5's frame geometry) and measures, rounds interleaved, medians:

  1. the default run (the page's own settings: 20 steps, attention capture on) in the core
     (`sdviz.generate`) and in a real headless Chromium, from the click on Generate to
     "finished", and to the first streamed frame;
  2. the server's cost per streamed step: the page's own streaming event, called by a raw
     client that reads every update, against the same run in the core, at the embedded
     model's size and at 512 x 512 (the `approx` preview, 50 steps);
  3. the memory one session's run holds (what the app keeps in the session's state) for a
     50-step run at SD 1.5's size, and the time the explorer takes to show a step whose
     frames are not decoded yet.

Targets (ratios and budgets, so they hold on any machine):
    app end to end           <= 1.3 x the core, default run, real browser
    first frame              <= 0.3 s after the click
    server cost per step     <= 10 ms at 512 x 512
    session memory           <= 30 MB, 50 steps at SD 1.5's size
Needs the test dependencies (selenium) and Debian's chromium + chromium-driver.

    python benchmarks/benchmark_app.py --gpu --write   # on a GPU (part 5), no browser needed

On a GPU it measures the same end-to-end ratio for a model of SD 1.5's own size (its UNet, VAE
and text encoder, random weights, fp16 as the app loads it on a GPU): the page's streaming event,
read to the end by a raw client, against the same run in the core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import sdviz  # noqa: E402
import sdviz.sampling.cache  # noqa: E402
from sdviz.sampling.attention import AttentionCapture  # noqa: E402

PROMPT = "a fish on the left and a rocket on the right on a blue background"  # the page's first example
SHORT_STEPS = 10  # a second, shorter 512 x 512 run: the difference is the cost per step, without the fixed costs
DOC = ROOT / "docs" / "BENCHMARKS.md"
MB = 2**20


# --- a model with SD 1.5's frame geometry -----------------------------------------------------

def frame_size_model(folder: Path) -> Path:
    """Random weights, SD 1.5's latent and frame geometry (4 x 64 x 64 latents, VAE factor 8, 512 x 512 frames,
    its scheduler and text width), and a small UNet and VAE, so that the model's time does not drown the page's."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from training.train import SD1_SCHEDULER

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, block_out_channels=(32, 64, 64, 64), layers_per_block=1, cross_attention_dim=768,
        attention_head_dim=2, norm_num_groups=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32, 32), layers_per_block=1, latent_channels=4, sample_size=512, norm_num_groups=16,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=768, num_hidden_layers=1, num_attention_heads=12,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
    ))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, unet=unet,
        tokenizer=CLIPTokenizer.from_pretrained(ROOT / "assets" / "sdviz-shapes" / "tokenizer"),
        scheduler=PNDMScheduler.from_config(SD1_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# --- the core -------------------------------------------------------------------------------------

def core_run(model, settings: sdviz.Settings, attention: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of the run in the core, as the app's handler makes it."""
    from ui.session import SELF_ATTENTION_POSITIONS

    capture = AttentionCapture(model, self_attention=True, self_max_positions=SELF_ATTENTION_POSITIONS) \
        if attention else None
    wall, cpu = time.perf_counter(), time.process_time()
    sdviz.generate(model, settings, capture=capture)
    return time.perf_counter() - wall, time.process_time() - cpu


# --- the page, in a real browser ---------------------------------------------------------------

# Timestamps (the page's clock) of the click, the first streamed step (its status, frames and filmstrip
# come in one update), "finished", and the guidance panel redrawn for the run (after the explorer).
WATCH = """
(window.sdvizObservers || []).forEach(o => o.disconnect());  // the last round's
window.sdvizObservers = [];
const watch = (element, callback) => {
  const observer = new MutationObserver(callback);
  observer.observe(element, {childList: true, subtree: true, characterData: true});
  window.sdvizObservers.push(observer);
};
window.sdvizTimes = {click: null, first: null, finished: null, explained: null};
const status = document.querySelector('#status');
let queued = false;  // this run's first status ("queued"); while it is redrawn, the last run's may show with it
watch(status, () => {
  const text = status.textContent, times = window.sdvizTimes, t = performance.now();
  const old = text.includes('queued') || text.includes('finished');
  if (text.includes('queued')) queued = true;
  if (times.first === null && queued && !old && /step \\d+ \\/ \\d+/.test(text)) times.first = t;
  if (times.finished === null && times.first !== null && text.includes('finished') && !text.includes('queued')) {
    times.finished = t;
  }
});
watch(document.querySelector('#guidance-formula'), () => {
  const times = window.sdvizTimes;
  if (times.explained === null && times.finished !== null) times.explained = performance.now();
});
// the timeline (wall-clock seconds, as the server's): each status and live frames drawn, with their step
const wall = () => (performance.timeOrigin + performance.now()) / 1000;
window.sdvizTimeline = [];
const shown = (what, element) => watch(element, () => {
  const marked = element.querySelector('[data-step]');
  window.sdvizTimeline.push({at: wall(), what: what, step: marked ? Number(marked.dataset.step) : null,
                             text: what === 'status' ? element.textContent : ''});
});
shown('status', status);
shown('live', document.querySelector('#live'));
window.sdvizTimeline.push({at: wall(), what: 'click'});
window.sdvizTimes.click = performance.now();
document.querySelector('#generate').click();
"""


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and all its descendants so far (Linux /proc)."""
    parent, used = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.name)
        parent[pid], used[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, grown = {root}, True
    while grown:
        children = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= children
        grown = bool(children)
    return sum(used.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


class Page:
    def __init__(self, url: str, profile: Path):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        from tests.conftest import open_page

        self.By, self.Wait = By, WebDriverWait
        self.driver = open_page(url, profile)
        time.sleep(1)

    def scrub(self, moves: int) -> list[float]:
        """Seconds from each move of the step slider (the range moved one step by the keyboard, as a reader
        drags it) to the explorer's step drawn: its facts and its x_t picture both of the new step."""
        from selenium.webdriver.common.keys import Keys

        slider = self.driver.find_element(self.By.CSS_SELECTOR, "#step-slider input[type=range]")
        last = int(slider.get_attribute("max"))
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
        seconds = []
        for step in range(last - 1, max(0, last - 1 - moves), -1):  # from the last step down
            before = self.driver.find_element(self.By.CSS_SELECTOR, "#xt-view img").get_attribute("src")
            started = time.perf_counter()
            slider.send_keys(Keys.ARROW_LEFT)
            self.Wait(self.driver, 60, poll_frequency=0.02).until(
                lambda d, step=step, before=before: f"step {step} / {last}" in d.find_element(
                    self.By.CSS_SELECTOR, "#step-info").text
                and d.find_element(self.By.CSS_SELECTOR, "#xt-view img").get_attribute("src") != before)
            seconds.append(time.perf_counter() - started)
            time.sleep(0.3)  # a reader's pace between moves
        return seconds

    def run(self, server, seed: int, at_finished=None) -> tuple[float, float, float, float, float]:
        """(click to first frame, click to finished, the browser's and the server's CPU seconds, finished to
        the guidance panel drawn) for the page's default run with this seed (each round its own, so that
        every round redraws the guidance panel)."""
        from selenium.webdriver.common.keys import Keys

        box = self.driver.find_element(self.By.CSS_SELECTOR, "#seed input[type=number]")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(str(seed), Keys.TAB)
        time.sleep(0.3)
        cpu, server_cpu = tree_cpu_seconds(self.driver.service.process.pid), server.cpu_seconds()
        self.driver.execute_script(WATCH)
        self.Wait(self.driver, 120, poll_frequency=0.05).until(
            lambda d: d.execute_script("return window.sdvizTimes.finished !== null"))
        times = self.driver.execute_script("return window.sdvizTimes")
        cpu, server_cpu = tree_cpu_seconds(self.driver.service.process.pid) - cpu, server.cpu_seconds() - server_cpu
        if at_finished is not None:
            at_finished()
        self.Wait(self.driver, 120, poll_frequency=0.05).until(  # the events after "finished"
            lambda d: d.execute_script("return window.sdvizTimes.explained !== null"))
        times = self.driver.execute_script("return window.sdvizTimes")
        time.sleep(1.5)  # the rest of them (distances, plots) before the next round
        return ((times["first"] - times["click"]) / 1000, (times["finished"] - times["click"]) / 1000, cpu,
                server_cpu, (times["explained"] - times["finished"]) / 1000)

    def close(self) -> None:
        self.driver.quit()


# --- the page's streaming event, read by a raw client ------------------------------------------

def stream_event() -> tuple[int, tuple[str, ...]]:
    """The index of the page's text-to-image streaming event (the page calls it by index) and the names of
    its inputs, in the order the page sends their values."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ui.config import AppConfig
    from ui.layout import build_demo
    from ui.session import Session

    class NoFiles:
        root = None

    config = AppConfig.from_env()
    cache = sdviz.sampling.cache.ModelCache(None, most=1, pinned=config.default_model)
    demo = build_demo(config, Session(config, cache, NoFiles()))
    found = [i for i, fn in demo.fns.items() if getattr(fn.fn, "__qualname__", "") == "RunHandlers.stream"]
    if len(found) != 1:
        raise RuntimeError(f"expected one 'RunHandlers.stream' event, found {found}")
    return found[0], demo.fns[found[0]].fn.names


def stream_via_queue(url: str, fn_index: int, values: list) -> tuple[float, int]:
    """Joins the queue as the page does and reads every server-sent update to the end.

    Returns (seconds from the join to the last message, updates received)."""
    import httpx

    session = uuid.uuid4().hex[:11]
    started = time.perf_counter()
    updates = 0
    with httpx.Client(timeout=300) as http:
        joined = http.post(url + "gradio_api/queue/join",
                           json={"data": values, "fn_index": fn_index, "session_hash": session, "event_data": None,
                                 "trigger_id": None})
        joined.raise_for_status()
        with http.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}) as response:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_generating":
                    updates += 1
                if message.get("msg") == "process_completed":
                    if not message.get("success", False):
                        raise RuntimeError(f"the run failed: {message.get('output')}")
                    return time.perf_counter() - started, updates
    raise RuntimeError("the stream ended without process_completed")


def page_values(names: tuple[str, ...], model_name: str, s: sdviz.Settings, attention: bool) -> list:
    """The streaming event's inputs in the page's order (`names`, from `stream_event`)."""
    values = {**s.to_dict(), "stop_signal": None, "model": model_name, "attention": attention}
    return [values[name] for name in names]


# --- session memory and the explorer ---------------------------------------------------------------

def session_memory(model_folder: Path, steps: int) -> dict:
    """Runs the app's own streaming handler to the end (no server), then shows steps in the explorer:
    what the session's state holds, and the time to show a step whose frames are not decoded."""
    from ui.config import AppConfig
    from ui.files import FileStore
    from ui.session import Session
    from ui.tabs.explore import ExploreHandlers
    from ui.tabs.run import RunHandlers

    config = AppConfig(default_model=str(model_folder), models=(str(model_folder),))
    files = FileStore(600, 2**30)
    session = Session(config, sdviz.sampling.cache.ModelCache(None, most=1, pinned=str(model_folder)), files)
    name = config.default_name
    settings = dict(prompt=PROMPT, negative_prompt="", model=name, scheduler="ddim", steps=steps, guidance=7.5,
                    seed=0, width=512, height=512, eta=0.0, preview="approx", every=1, attention=False)

    async def stream():
        last = None
        async for update in RunHandlers(session).stream(None, **settings):
            last = update
        return last[-1]

    traj = asyncio.run(stream())
    explorer = ExploreHandlers(session)
    explorer.finish(traj)
    shown = []
    for step in (steps, 1, steps // 2, steps // 3):  # the last step (shown after the run), then scrubbing
        started = time.perf_counter()
        explorer.show_step(traj, step, None, "all", "this step")
        shown.append(time.perf_counter() - started)
    files.remove()
    return {"bytes": traj.nbytes(), "show_first_seconds": shown[1:], "show_last_seconds": shown[0]}


def sd15_attention_per_step() -> float:
    """Bytes the app's attention capture (cross- and self-attention) keeps per step, SD 1.5's UNet at 512 x 512."""
    from benchmarks.benchmark import sd15_random_pipeline
    from ui.session import SELF_ATTENTION_POSITIONS

    model = sdviz.from_pipeline(sd15_random_pipeline(), "SD 1.5-sized, random weights")
    capture = AttentionCapture(model, self_attention=True, self_max_positions=SELF_ATTENTION_POSITIONS)
    run = sdviz.Run(model, sdviz.Settings(prompt=PROMPT, steps=50, preview="approx"), capture=capture)
    for record in run:
        if record.index == 1:  # two steps; every step keeps the same
            run.stop()
    maps = capture.maps()
    return maps.nbytes / len(maps.steps)


# --- report ----------------------------------------------------------------------------------------

def markdown(figures: dict, args) -> str:
    f = figures
    e2e, core = f["browser_finished"], f["core_default"]
    first = f["browser_first"]
    emb, big = f["embedded_stream"], f["frame_size_stream"]
    mem = f["memory"]
    held = mem["bytes"]  # attention off on the 512 x 512 model: SD 1.5's own is measured apart
    attention_mb = f["sd15_attention_per_step"] * mem["steps"] / MB
    total_mb = sum(held.values()) / MB + attention_mb
    device = f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads"
    lines = [
        "<!-- bench:app -->",
        "### The page against the core",
        "",
        f"{device}; torch {torch.__version__}; headless Chromium on the same cores; {args.rounds} interleaved "
        "rounds, medians.",
        "",
        "| figure | measured | reference | ratio / budget | target |",
        "|---|---|---|---|---|",
        f"| default run (embedded, 20 steps, attention on), click to \"finished\" in Chromium | {e2e:.3f} s "
        f"| core {core:.3f} s | {e2e / core:.2f} x | <= 1.3 x |",
        f"| click to the first streamed frame in Chromium | {first:.3f} s | | | <= 0.3 s |",
        f"| \"finished\" to the guidance panel drawn for the run (after the explorer's step) in Chromium | "
        f"{f['browser_explained']:.3f} s | | | |",
        f"| CPU seconds of that run in Chromium: the browser (every process), the server | "
        f"{f['browser_cpu']:.2f} s, {f['browser_server_cpu']:.2f} s | core {f['core_default_cpu']:.2f} s "
        f"| {os.cpu_count()} cores | |",
        f"| server cost per streamed step, embedded 64 x 64, 20 steps, attention on | "
        f"{emb['per_step_ms']:.1f} ms wall, {emb['cpu_per_step_ms']:.1f} ms CPU | core {emb['core']:.3f} s, "
        f"app {emb['app']:.3f} s, {emb['updates']} updates | | |",
        f"| server cost per streamed step, 512 x 512 approx, 50 steps | {big['per_step_ms']:.1f} ms wall, "
        f"{big['cpu_per_step_ms']:.1f} ms CPU | core {big['core']:.3f} s, app {big['app']:.3f} s, "
        f"{big['updates']} updates | | <= 10 ms |",
        f"| the same, per step beyond the fixed costs (slope between {SHORT_STEPS} and 50 steps) | "
        f"{f['frame_size_marginal']['per_step_ms']:.1f} ms wall, {f['frame_size_marginal']['cpu_per_step_ms']:.1f} ms "
        f"CPU | fixed {f['frame_size_marginal']['fixed_ms']:.0f} ms a run | | <= 10 ms |",
        f"| one session's memory, 50 steps at SD 1.5's size | {total_mb:.1f} MB | latents "
        f"{held['latents'] / MB:.1f}, frames {held['frames'] / MB:.1f}, images {held['images'] / MB:.1f}, "
        f"attention {attention_mb:.1f} MB | | <= 30 MB |",
        f"| explorer: show a step not decoded yet, 512 x 512 approx | "
        f"{1000 * statistics.median(mem['show_first_seconds']):.0f} ms | last step (shown after the run) "
        f"{1000 * mem['show_last_seconds']:.0f} ms | | |",
        "",
        "Server cost per step: (the page's streaming event read to the end by a raw client - the same run in the "
        "core) / steps, wall and server CPU. Session memory: the trajectory the app keeps in the session's state "
        "after the run and four explorer views (latents, frames, images measured on the 512 x 512 model), plus "
        "the attention maps the page's capture keeps per step on SD 1.5's own UNet (2 steps measured) x 50.",
        "",
        f"Reproduce: `{' '.join(['python', 'benchmarks/benchmark_app.py', *sys.argv[1:]])}`",
        "<!-- /bench:app -->",
    ]
    return "\n".join(lines)


# --- on a GPU: SD 1.5's own size -------------------------------------------------------------------

GPU_RUNS = {  # name: (settings, attention capture), at SD 1.5's native 512 x 512
    "the page's default run (20 steps, full VAE previews of x_t and x0, attention on)":
        (sdviz.Settings(prompt=PROMPT), True),
    "50 steps, approx previews, attention off": (sdviz.Settings(prompt=PROMPT, steps=50, preview="approx"), False),
    f"{SHORT_STEPS} steps, approx previews, attention off":
        (sdviz.Settings(prompt=PROMPT, steps=SHORT_STEPS, preview="approx"), False),
}


def gpu_figures(work: Path, rounds: int) -> str:
    """The page's streaming event for an SD 1.5-sized model against the core, on the GPU, medians."""
    from benchmarks.benchmark import sd15_random_pipeline
    from tests.conftest import AppServer

    folder = work / "sd15-random"
    torch.manual_seed(0)
    pipe = sd15_random_pipeline()
    pipe.unet.half(), pipe.text_encoder.half()  # as load_model runs GPUs; the VAE stays fp32 (force_upcast)
    pipe.save_pretrained(folder, safe_serialization=True)
    del pipe
    model = sdviz.load_model(str(folder), device="cuda")
    server = AppServer(work / "app-sd15", SDVIZ_MODEL=str(folder), SDVIZ_DEVICE="cuda")
    fn_index, names = stream_event()
    samples: dict[str, list] = {}
    try:
        for settings, attention in GPU_RUNS.values():  # warm up: kernels chosen, first allocations
            stream_via_queue(server.url, fn_index, page_values(names, model.name, settings, attention))
            core_run(model, settings, attention)
        for round_ in range(rounds):
            print(f"round {round_ + 1} / {rounds}", file=sys.stderr)
            for name, (settings, attention) in GPU_RUNS.items():
                settings = replace(settings, seed=round_ + 1)
                wall, _ = core_run(model, settings, attention)
                cpu = server.cpu_seconds()
                seconds, updates = stream_via_queue(server.url, fn_index,
                                                    page_values(names, model.name, settings, attention))
                samples.setdefault(name, []).append((wall, seconds, updates, server.cpu_seconds() - cpu))
    finally:
        server.stop()
    print(json.dumps(samples), file=sys.stderr)
    lines = [
        "<!-- bench:app-gpu -->",
        "### The page against the core on a GPU, SD 1.5's size",
        "",
        f"{torch.cuda.get_device_name()}; torch {torch.__version__}; SD 1.5's UNet, VAE and text encoder with random "
        f"weights (timing does not depend on the weights), fp16 UNet and text encoder, fp32 VAE, 512 x 512; "
        f"{rounds} interleaved rounds, medians. The app is `python app.py` on the same GPU; its page's streaming "
        "event is read to the end by a raw client (every update received), from the join to the last message. "
        "No browser: the machine has none; on the CPU the raw client read the embedded model's run at 1.13 x.",
        "",
        "| run | core | app end to end | ratio | updates | server cost per step: wall beyond the core; "
        "the server's CPU, the run included |",
        "|---|---|---|---|---|---|",
    ]
    medians = {name: [statistics.median(column) for column in zip(*samples[name])] for name in GPU_RUNS}
    for name, (settings, _) in GPU_RUNS.items():
        core, app, updates, cpu = medians[name]
        lines.append(f"| {name} | {core:.3f} s | {app:.3f} s | {app / core:.2f} x | {updates:.0f} | "
                     f"{1000 * (app - core) / settings.steps:.1f} ms, {1000 * cpu / settings.steps:.1f} ms |")
    extra = [medians[name][1] - medians[name][0] for name in list(GPU_RUNS)[1:]]  # 50 steps, then the short run
    slope = (extra[0] - extra[1]) / (50 - SHORT_STEPS)
    lines += ["", f"Per step beyond the fixed costs (the slope of the app's extra time between {SHORT_STEPS} and 50 "
              f"approx steps): {1000 * slope:.1f} ms a step (target <= 10 ms); fixed "
              f"{1000 * (extra[1] - slope * SHORT_STEPS):.0f} ms a run (the queue's events, "
              "the final 512 x 512 image).",
              "", f"Reproduce: `python benchmarks/benchmark_app.py --gpu --rounds {rounds}`", "<!-- /bench:app-gpu -->"]
    return "\n".join(lines)


def page_only(rounds: int) -> None:
    """Part 1 alone: the page's default run in Chromium against the core, each round and the medians."""
    from tests.conftest import AppServer

    work = Path(tempfile.mkdtemp(prefix="sdviz-bench-"))
    server = AppServer(work / "app")
    page, model = Page(server.url, work / "chromium"), sdviz.load_model()
    rows = []
    try:
        page.run(server, 0), core_run(model, sdviz.Settings(prompt=PROMPT), True)  # warm up
        for round_ in range(rounds):
            core, _ = core_run(model, sdviz.Settings(prompt=PROMPT, seed=round_ + 1), True)
            first, finished, browser_cpu, server_cpu, _ = page.run(server, round_ + 1)
            rows.append((core, first, finished, browser_cpu, server_cpu))
            print(f"core {core:.2f} s, first step {first:.2f} s, finished {finished:.2f} s ({finished / core:.2f} x), "
                  f"CPU: browser {browser_cpu:.2f} s, server {server_cpu:.2f} s")
    finally:
        page.close()
        server.stop()
    core, first, finished, browser_cpu, server_cpu = (statistics.median(c) for c in zip(*rows))
    print(f"median: core {core:.2f} s, first step {first:.2f} s, finished {finished:.2f} s ({finished / core:.2f} x), "
          f"CPU: browser {browser_cpu:.2f} s, server {server_cpu:.2f} s")


# --- where the page's time goes: the server's timeline beside the browser's ---------------------------

def chromium_cpu(root: int) -> dict[str, float]:
    """CPU seconds so far of chromium's processes under `root` (chromedriver), by kind: the renderer (the
    page's script, layout and painting), the GPU process (compositing, in software here), the rest."""
    kinds: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "chrom" not in command:
            continue
        kind = next((k for k in ("renderer", "gpu-process") if f"--type={k}" in command), "browser and others")
        kinds[kind] = kinds.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return kinds


RENDERER_METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")


def renderer_metrics(driver) -> dict[str, float]:
    """The page's main thread so far (Chrome's Performance domain): seconds in tasks, script, layout, style."""
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return {m["name"]: m["value"] for m in metrics if m["name"] in RENDERER_METRICS}


def timeline_round(page: Page, server, model, trace: Path, seed: int) -> dict:
    """One round: the core's run (its steps' own seconds), then the page's run with both timelines."""
    settings = sdviz.Settings(prompt=PROMPT, seed=seed)
    from ui.session import SELF_ATTENTION_POSITIONS

    capture = AttentionCapture(model, self_attention=True, self_max_positions=SELF_ATTENTION_POSITIONS)
    started = time.perf_counter()
    core = sdviz.generate(model, settings, capture=capture)
    core_wall = time.perf_counter() - started
    trace.write_text("")
    cpu, metrics = chromium_cpu(page.driver.service.process.pid), renderer_metrics(page.driver)
    ended = {}

    def at_finished():
        ended["cpu"], ended["metrics"] = chromium_cpu(page.driver.service.process.pid), renderer_metrics(page.driver)

    first, finished, browser_cpu, server_cpu, _ = page.run(server, seed, at_finished)
    after_cpu, after_metrics = ended["cpu"], ended["metrics"]
    browser = page.driver.execute_script("return window.sdvizTimeline")
    served = [json.loads(line) for line in trace.read_text().splitlines()]
    return {"core": core_wall, "core_encode": core.timings["encode_prompt"],
            "core_steps": [r.seconds for r in core.steps], "first": first, "finished": finished,
            "browser_cpu": browser_cpu, "server_cpu": server_cpu, "browser": browser, "served": served,
            "chromium": {k: after_cpu.get(k, 0) - cpu.get(k, 0) for k in after_cpu},
            "renderer": {k: after_metrics[k] - metrics.get(k, 0) for k in after_metrics}}


def timeline_figures(r: dict) -> dict:
    """The round's breakdown, in seconds from the click (the browser's and the server's clocks are one)."""
    click = next(e["at"] for e in r["browser"] if e["what"] == "click")
    status = [e for e in r["browser"] if e["what"] == "status"]
    at = next(i for i, e in enumerate(status) if "queued" in e["text"])  # this run's first status
    queued = status[at]["at"]
    first = next(i for i in range(at, len(status)) if status[i]["step"] and "queued" not in status[i]["text"])
    first_shown = status[first]["at"]
    finished_shown = next(e["at"] for e in status[first:] if "finished" in e["text"])
    served = r["served"]
    handler = next(e["at"] for e in served if e["what"] == "handler")
    records = [e for e in served if e["what"] == "record"]
    stream = [e for e in served if e["what"] == "sent" and e["fn"] == "RunHandlers.stream"
              and e["msg"] in ("process_generating", "process_completed")]
    batches = [e for e in served if e["what"] == "batch"]
    answers = [e for e in served if e["what"] == "answered"]  # the live feed's (ui.live_feed)
    updates = sorted([e for e in stream if e["msg"] == "process_generating"] + answers, key=lambda e: e["at"])
    first_batch = next(i for i, b in enumerate(batches) if 0 in b["steps"])
    first_sent = [e for e in updates if e["at"] >= batches[first_batch]["at"]][0]["at"]
    finished_sent = [e for e in stream if e["msg"] == "process_generating"][-1]["at"]
    live = [e for e in r["browser"] if e["what"] == "live" and e["step"]]
    # each step update's delay from sent to drawn: the live frames of its last step
    delays = []
    for batch in batches:
        sent = next((e["at"] for e in updates if e["at"] >= batch["at"]), None)
        drawn = next((e["at"] for e in live if e["step"] == batch["steps"][-1] + 1), None)
        if sent is not None and drawn is not None:
            delays.append(drawn - sent)
    return {
        "click to 'queued' shown": queued - click,
        "click to the run's handler": handler - click,
        "handler to step 1 made (encode + step 1, previews)": records[0]["at"] - handler,
        "core: encode + step 1": r["core_encode"] + r["core_steps"][0],
        "step 1 made to its update sent": first_sent - records[0]["at"],
        "update sent to step 1 shown": first_shown - first_sent,
        "click to step 1 shown": first_shown - click,
        "the model's steps, summed (app)": sum(e["seconds"] for e in records),
        "handler: step 1 made to the last": records[-1]["at"] - records[0]["at"],
        "the model's steps, summed (core)": sum(r["core_steps"]),
        "last step made to 'finished' sent": finished_sent - records[-1]["at"],
        "'finished' sent to shown": finished_shown - finished_sent,
        "click to 'finished' shown": finished_shown - click,
        "core run": r["core"],
        "ratio: click to 'finished' / core run": (finished_shown - click) / r["core"],
        "updates": len(updates),
        "of which through the event": sum(e["what"] == "sent" for e in updates),
        "bytes per update": statistics.mean(e["bytes"] for e in updates),
        "update sent to drawn, median": statistics.median(delays) if delays else float("nan"),
        "browser CPU": r["browser_cpu"],
        **{f"browser CPU: {k}": v for k, v in sorted(r["chromium"].items())},
        **{f"renderer main thread: {k}": v for k, v in r["renderer"].items()},
        "server CPU": r["server_cpu"],
    }


def breakdown(rounds: int) -> None:
    """The page's default run with the server's timeline (benchmarks/timeline.py) beside the browser's: each
    figure of the breakdown in each round, then the medians."""
    from tests.conftest import AppServer

    work = Path(tempfile.mkdtemp(prefix="sdviz-bench-"))
    trace = work / "timeline.jsonl"
    trace.touch()
    server = AppServer(work / "app", script="benchmarks/timeline.py", SDVIZ_TIMELINE=str(trace))
    page, model = Page(server.url, work / "chromium"), sdviz.load_model()
    page.driver.execute_cdp_cmd("Performance.enable", {})
    figures = []
    try:
        timeline_round(page, server, model, trace, 0)  # warm up
        for round_ in range(rounds):
            figures.append(timeline_figures(timeline_round(page, server, model, trace, round_ + 1)))
            print(json.dumps({k: round(v, 4) for k, v in figures[-1].items()}), file=sys.stderr)
        moves = page.scrub(2 * rounds + 4)  # on the last round's finished run
    finally:
        page.close()
        server.stop()
    print(f"| the page's default run, {rounds} rounds | median | min | max |\n|---|---|---|---|")
    for key in figures[0]:
        values = [f[key] for f in figures]
        unit = "" if key.startswith(("updates", "of which", "bytes", "ratio")) else " s"
        print(f"| {key} | {statistics.median(values):.3f}{unit} | {min(values):.3f} | {max(values):.3f} |")
    print(f"| the explorer: a slider move to its step drawn ({len(moves)} moves) | {statistics.median(moves):.3f} s "
          f"| {min(moves):.3f} | {max(moves):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gpu", action="store_true", help="SD 1.5's own size on the GPU, no browser (part 5)")
    parser.add_argument("--write", action="store_true", help=f"record the figures in {DOC.relative_to(ROOT)}")
    parser.add_argument("--page-only", action="store_true",
                        help="only the default run in Chromium against the core (part 1), a line per round")
    parser.add_argument("--breakdown", action="store_true",
                        help="where the default run's time goes: the server's timeline beside the browser's")
    args = parser.parse_args()
    if args.breakdown:
        breakdown(args.rounds)
        return
    if args.page_only:
        page_only(args.rounds)
        return

    if args.gpu:
        from benchmarks.benchmark import write_section

        section = gpu_figures(Path(tempfile.mkdtemp(prefix="sdviz-bench-")), args.rounds)
        print(section)
        if args.write:
            write_section("app-gpu", section)
        return

    from benchmarks.benchmark import write_section
    from tests.conftest import AppServer

    work = Path(tempfile.mkdtemp(prefix="sdviz-bench-"))
    big_folder = frame_size_model(work / "sd15-frames")
    embedded = sdviz.load_model()
    big = sdviz.load_model(str(big_folder))
    defaults = sdviz.Settings(prompt=PROMPT)
    big_settings = sdviz.Settings(prompt=PROMPT, steps=50, scheduler="ddim", width=512, height=512, preview="approx")
    fn_index, names = stream_event()
    servers = {"embedded": AppServer(work / "app-embedded"),
               "big": AppServer(work / "app-big", SDVIZ_MODEL=str(big_folder))}
    page = Page(servers["embedded"].url, work / "chromium")
    samples: dict[str, list] = {}

    def add(key, value):
        samples.setdefault(key, []).append(value)

    def streamed(key, server, model, settings, attention):
        cpu = server.cpu_seconds()
        seconds, updates = stream_via_queue(server.url, fn_index, page_values(names, model.name, settings, attention))
        add(f"{key}_app", seconds)
        add(f"{key}_app_cpu", server.cpu_seconds() - cpu)
        add(f"{key}_updates", updates)
        wall, cpu = core_run(model, settings, attention)
        add(f"{key}_core", wall)
        add(f"{key}_core_cpu", cpu)

    try:
        page.run(servers["embedded"], 0), core_run(embedded, defaults, True)  # warm up: imports, first allocations
        stream_via_queue(servers["big"].url, fn_index, page_values(names, big.name, big_settings, False))
        core_run(big, big_settings, False)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} / {args.rounds}", file=sys.stderr)
            wall, cpu = core_run(embedded, replace(defaults, seed=round_ + 1), True)
            add("core_default", wall)
            add("core_default_cpu", cpu)
            first, finished, browser_cpu, server_cpu, explained = page.run(servers["embedded"], round_ + 1)
            add("browser_explained", explained)
            add("browser_first", first)
            add("browser_finished", finished)
            add("browser_cpu", browser_cpu)
            add("browser_server_cpu", server_cpu)
            streamed("embedded", servers["embedded"], embedded, defaults, True)
            streamed("big", servers["big"], big, big_settings, False)
            streamed("big_short", servers["big"], big, replace(big_settings, steps=SHORT_STEPS), False)
    finally:
        page.close()
        for server in servers.values():
            server.stop()

    med = {key: statistics.median(values) for key, values in samples.items()}

    def per_step(key, steps):
        return {"core": med[f"{key}_core"], "app": med[f"{key}_app"], "updates": int(med[f"{key}_updates"]),
                "per_step_ms": 1000 * (med[f"{key}_app"] - med[f"{key}_core"]) / steps,
                "cpu_per_step_ms": 1000 * (med[f"{key}_app_cpu"] - med[f"{key}_core_cpu"]) / steps}

    def marginal(key, short_key, steps, short_steps):
        """Per step beyond the fixed costs (the queue events, the final image): the slope between two lengths."""
        extra = {k: (med[f"{k}_app"] - med[f"{k}_core"], med[f"{k}_app_cpu"] - med[f"{k}_core_cpu"])
                 for k in (key, short_key)}
        return {"per_step_ms": 1000 * (extra[key][0] - extra[short_key][0]) / (steps - short_steps),
                "cpu_per_step_ms": 1000 * (extra[key][1] - extra[short_key][1]) / (steps - short_steps),
                "fixed_ms": 1000 * (extra[short_key][0] - (extra[key][0] - extra[short_key][0])
                                    * short_steps / (steps - short_steps))}

    memory = session_memory(big_folder, 50)
    memory["steps"] = 50
    figures = {"core_default": med["core_default"], "core_default_cpu": med["core_default_cpu"],
               "browser_cpu": med["browser_cpu"], "browser_server_cpu": med["browser_server_cpu"],
               "browser_first": med["browser_first"], "browser_explained": med["browser_explained"],
               "browser_finished": med["browser_finished"], "embedded_stream": per_step("embedded", defaults.steps),
               "frame_size_stream": per_step("big", big_settings.steps),
               "frame_size_marginal": marginal("big", "big_short", big_settings.steps, SHORT_STEPS), "memory": memory,
               "sd15_attention_per_step": sd15_attention_per_step()}
    section = markdown(figures, args)
    print(section)
    print(json.dumps({k: v for k, v in samples.items()}, default=float), file=sys.stderr)
    if args.write:
        write_section("app", section)


if __name__ == "__main__":
    main()
