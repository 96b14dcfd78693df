"""What a comparison costs the app, in one run: memory held by a session, and time beyond the runs.

    python benchmarks/benchmark_compare.py            # the figures below
    python benchmarks/benchmark_compare.py --write    # also record them in docs/BENCHMARKS.md

The Compare tab's own handler (`ui.tabs.compare.CompareHandlers.stream`, in process) runs 4 variants of
a 50-step run (ddim, euler, dpmpp_2m_karras, unipc), on the embedded model and on a random-weight
model with SD 1.5's latent and frame geometry (4 x 64 x 64 latents, 512 x 512 frames, the `approx`
preview). Measured, per model:

  1. what the session's state holds afterwards (`Trajectory.nbytes` over the variants: latents,
     frames in the shared cache, images), against what the variants' full trajectories hold
     (the API keeps those until it has written them);
  2. the whole comparison's wall time against the same four runs in the core (`sdviz.generate`),
     measured in the same process, as a ratio;
  3. the time to show the variants lined up at a new slider position whose frames are not cached.

The bound the host sets: SDVIZ_MAX_COMPARE_STEPS (400 by default) steps over all variants, each
keeping x_t and x0 latents, plus one 4 MB frame cache shared out between them (each keeps at least its
newest step's frames) and the final images.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sdviz  # noqa: E402
import sdviz.sampling.cache  # noqa: E402

PROMPT = "a large red circle on the left on a blue background"
SCHEDULERS = ("ddim", "euler", "dpmpp_2m_karras", "unipc")
STEPS = 50
MB = 2**20


def handlers_for(folder: str):
    from ui.config import AppConfig
    from ui.files import FileStore
    from ui.session import Session
    from ui.tabs.compare import CompareHandlers

    config = AppConfig(default_model=folder, models=(folder,))
    files = FileStore(600, 2**30)
    session = Session(config, sdviz.sampling.cache.ModelCache(None, most=1, pinned=folder), files)
    return CompareHandlers(session), files


def session_comparison(comparer, size: int | None, preview: str, shown_only: bool = True):
    """The tab's stream to the end (shown_only: as the tab keeps it; else as the API holds it before
    writing); (comparison, seconds)."""
    async def stream():
        last = None
        async for update in comparer.stream(prompt=PROMPT, scheduler="ddim", steps=STEPS, width=size, height=size,
                                            preview=preview, first_name="scheduler",
                                            first_values=", ".join(SCHEDULERS)):
            last = update
        return last[2]

    async def held():
        from sdviz.workflows.compare import Comparison, parse_vary

        labels, runs = comparer.build_runs([parse_vary("scheduler=" + ",".join(SCHEDULERS))], prompt=PROMPT,
                                      scheduler="ddim", steps=STEPS, seed=0, width=size, height=size, preview=preview)
        async for _ in comparer.follow_variants(runs, labels):
            pass
        return Comparison([run.trajectory for run in runs], labels)

    started = time.perf_counter()
    comparison = asyncio.run(stream() if shown_only else held())
    return comparison, time.perf_counter() - started


def core_seconds(model, size: int | None, preview: str) -> float:
    started = time.perf_counter()
    for scheduler in SCHEDULERS:
        sdviz.generate(model, sdviz.Settings(prompt=PROMPT, scheduler=scheduler, steps=STEPS, seed=0, width=size,
                                             height=size, preview=preview))
    return time.perf_counter() - started


def held_bytes(comparison) -> dict[str, int]:
    totals: dict[str, int] = {}
    for traj in comparison.trajectories:
        for kind, count in traj.nbytes().items():
            totals[kind] = totals.get(kind, 0) + count
    return totals


def measure(name: str, folder: str, size: int | None, preview: str, rounds: int) -> dict:
    comparer, files = handlers_for(folder)
    model = comparer.session.model(None)
    session_comparison(comparer, size, preview)  # warm up
    core_seconds(model, size, preview)
    app, core = [], []
    for _ in range(rounds):  # interleaved
        comparison, seconds = session_comparison(comparer, size, preview)
        app.append(seconds)
        core.append(core_seconds(model, size, preview))
    full, _ = session_comparison(comparer, size, preview, shown_only=False)
    shows = []
    for percent in (37, 61, 83):  # positions whose frames the cache does not hold
        started = time.perf_counter()
        comparer.show(comparison, percent, "sigma")
        shows.append(time.perf_counter() - started)
    files.remove()
    steps = sum(len(t.steps) for t in comparison.trajectories)
    return {"name": name, "size": comparison.trajectories[0].settings.width, "steps": steps,
            "held": held_bytes(comparison), "full": held_bytes(full), "app": statistics.median(app),
            "core": statistics.median(core), "show": statistics.median(shows)}


def markdown(results: list[dict], limit_steps: int) -> str:
    lines = [
        "<!-- bench:compare -->",
        "### A comparison in one session",
        "",
        f"`python benchmarks/benchmark_compare.py`: the Compare tab's handler, {len(SCHEDULERS)} variants "
        f"({', '.join(SCHEDULERS)}) of a {STEPS}-step run, medians; the core is the same four runs with "
        "`sdviz.generate`, in the same process.",
        "",
        "| model | held by the session | of which latents / frames / images | the variants' full trajectories "
        "| comparison / core time | show a new slider position |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        held, full = r["held"], r["full"]
        lines.append(
            f"| {r['name']} ({r['size']} x {r['size']}, {r['steps']} steps) | {sum(held.values()) / MB:.1f} MB "
            f"| {held['latents'] / MB:.1f} / {held['frames'] / MB:.1f} / {held['images'] / MB:.2f} MB "
            f"| {sum(full.values()) / MB:.1f} MB | {r['app']:.2f} s / {r['core']:.2f} s = {r['app'] / r['core']:.2f} x "
            f"| {1000 * r['show']:.0f} ms |")
    big = results[-1]
    per_step = big["held"]["latents"] / big["steps"]
    lines += [
        "",
        f"The bound: a step of SD 1.5's size keeps {per_step / 1024:.0f} KB of latents (x_t and x0); with "
        f"SDVIZ_MAX_COMPARE_STEPS = {limit_steps} steps over all variants a session's comparison holds at most "
        f"{limit_steps * per_step / MB:.0f} MB of latents, whatever the variants, plus the frames (a 4 MB cache "
        "shared out between the variants, where each keeps at least its newest step's x_t and x0: 1.5 MB at "
        "512 x 512) and each variant's final image. "
        "The comparison time includes computing each variant's distance to its final image (a decode per step) "
        "and streaming the columns.",
        "<!-- /bench:compare -->",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    from benchmarks.benchmark import write_section
    from benchmarks.benchmark_app import frame_size_model
    from sdviz.sampling.limits import Limits

    work = Path(tempfile.mkdtemp(prefix="sdviz-bench-compare-"))
    big_folder = frame_size_model(work / "sd15-frames")
    results = [measure("embedded model", str(sdviz.sampling.models.default_model()), None, "full", args.rounds),
               measure("SD 1.5's size, random weights", str(big_folder), 512, "approx", args.rounds)]
    section = markdown(results, Limits().compare_steps)
    print(section)
    if args.write:
        write_section("compare", section)


if __name__ == "__main__":
    main()
