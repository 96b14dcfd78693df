"""The live view at display rate: every step kept, updates coalesced, the filmstrip appended to,
the session holding latents and a bounded frame cache; the explorer and downloads decode on demand."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from PIL import Image

import sdviz
from sdviz.sampling.frames import DEFAULT_MAX_BYTES
from ui import html
from ui.tabs.run import DISPLAY_RATE

PROMPT = "a small blue square at the top on a yellow background"


def stream(runner, **settings):
    """Runs the page's streaming handler to the end; (updates, seconds)."""
    values = dict(prompt=PROMPT, negative_prompt="", model=runner.session.config.default_name, scheduler="ddim",
                  steps=20, guidance=7.5, seed=3, width=None, height=None, eta=0.0, preview="full", every=1,
                  attention=False) | settings

    async def follow():
        updates = []
        started = time.perf_counter()
        async for update in runner.stream(None, **values):
            updates.append(update)
        return updates, time.perf_counter() - started

    return asyncio.run(follow())


def test_filmstrip_grows_by_appending_and_thins_past_its_width():
    strip = html.Filmstrip(most=8)
    frame = np.zeros((16, 16, 3), np.uint8)
    shown, rebuilt = [strip.html()], 0
    for done in range(0, 41):
        if strip.add(done, frame):
            shown.append(strip.html())
            rebuilt += not shown[-1].startswith(shown[-2])
            assert len(strip.figures) <= 8
    assert rebuilt == 3  # strides 2, 4 and 8: the row is sent whole three times, appended to otherwise
    assert [done for done, _ in strip.figures] == [0, 8, 16, 24, 32, 40]
    strip.close(41, frame)
    steps = [done for done, _ in strip.figures]
    assert steps[0] == 0 and steps[-1] == 41 and all(d % strip.stride == 0 for d in steps[:-1])
    assert strip.html().startswith(shown[-1])


def test_a_fast_run_streams_at_display_rate_keeps_every_step_and_holds_no_frames(runner):
    updates, seconds = stream(runner, steps=100, guidance=1.0, preview="approx")
    traj = updates[-1][-1]
    assert len(traj.steps) == 100 and traj.complete
    assert [s.index for s in traj.steps] == list(range(100))
    live = updates[1:-1]  # between the start and the end
    # the first step goes out at once, then at most DISPLAY_RATE updates a second
    assert 'data-step="1"' in live[0][2]
    assert len(live) <= seconds * DISPLAY_RATE + 2, (len(live), seconds)
    assert len(live) < 100
    # the session's trajectory: latents, no frames in its records, a bounded cache
    assert all(s.x_t_image is None and s.x0_image is None and s.decoded for s in traj.steps)
    assert traj.nbytes()["frames"] == traj.frame_cache.nbytes <= DEFAULT_MAX_BYTES
    # the filmstrip ends on the last step; the live view shows it
    strip = updates[-1][3]
    assert (strip.endswith("<figcaption>step 100</figcaption></figure>")
            and strip.startswith('<figure data-step="noise"'))
    last_live = next(u[2] for u in reversed(updates) if isinstance(u[2], str))
    assert 'data-step="100"' in last_live


def test_the_explorer_and_downloads_decode_released_steps_as_the_run_did(session, runner, tmp_path):
    from ui.clicks import clickable
    from ui.tabs.downloads import DownloadHandlers
    from ui.tabs.explore import ExploreHandlers

    updates, _ = stream(runner, steps=12)
    traj = updates[-1][-1]
    reference = sdviz.generate(session.model(None), sdviz.Settings(prompt=PROMPT, steps=12, seed=3))
    assert np.array_equal(traj.final_image, reference.final_image)  # the run's, though its frames were taken
    explorer = ExploreHandlers(session)
    explorer.finish(traj)
    for step in (12, *range(1, 12)):  # every step, the last (shown after the run) first
        x_t, x0, *_ = explorer.show_step(traj, step, None, "all", "this step")
        assert np.array_equal(np.asarray(Image.open(x_t).convert("RGB")), reference.steps[step - 1].x_t_image)
        assert np.array_equal(np.asarray(Image.open(x0).convert("RGB")),  # sent enlarged, to be clicked on
                              clickable(reference.steps[step - 1].x0_image))
    files, _ = DownloadHandlers(session).downloads(traj, None)
    assert [f.rsplit("/", 1)[-1] for f in files] == ["filmstrip.png", "trajectory.gif", "trajectory.mp4",
                                                      "trajectory.zip", "run.html"]
    import imageio.v3 as iio

    assert len(iio.imread(files[1], index=None)) == 12 + 1  # the noise, then every step
    assert all(s.x_t_image is None for s in traj.steps)  # the export's frames were not kept


def test_torch_calls_go_to_the_model_thread_and_are_served_between_a_runs_steps(embedded):
    """A run steps on the model thread; a call made meanwhile (the explorer's decode) is done on the
    same thread between two steps, not after the run."""
    import threading

    from ui.model_threads import ModelThreads
    from ui.streaming import follow

    threads = ModelThreads(1)
    run = sdviz.Run(embedded, sdviz.Settings(prompt=PROMPT, steps=40))
    answered = {}

    def explorer_call():
        answered["thread"] = threads.call(lambda: threading.current_thread().name)
        answered["steps_done"] = len(run.trajectory.steps)

    async def watch():
        async for records in follow(run, None, 0.0, threads):
            if records[-1].index == 2 and "caller" not in answered:
                answered["caller"] = threading.Thread(target=explorer_call)
                answered["caller"].start()

    asyncio.run(watch())
    answered["caller"].join(10)
    assert answered["thread"] == "sdviz-model-0"
    assert answered["steps_done"] < 40  # served while the run was still going
    assert len(run.trajectory.steps) == 40 and run.trajectory.complete
