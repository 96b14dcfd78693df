"""The Compare tab's handlers in process, on the embedded model: variants streamed one after another into
their columns, each the run `generate` makes; lined up by one slider; a session's comparison bounded in
memory; Stop and the host's limits; the downloads."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz.analysis.align import at
from sdviz.sampling.frames import DEFAULT_MAX_BYTES
from sdviz.workflows.compare import TEXT_SEPARATOR
from ui.session import Session, StopSignal
from ui.tabs.compare import CompareHandlers, example_values

PROMPT = "a large red circle on the left on a blue background"


@pytest.fixture(scope="module")
def comparer(session):
    return CompareHandlers(session)


def hosted(session, **limits) -> CompareHandlers:
    """The Compare tab's handlers on a host with other limits (ui.config: SDVIZ_MAX_*), the same models,
    model threads and files."""
    config = replace(session.config, limits=replace(session.limits, **limits))
    return CompareHandlers(Session(config, session.cache, session.files, session.threads))


def stream(comparer, first=("scheduler", "ddim, heun"), second=("guidance", "1, 7.5"), stop_signal=None,
           on_update=None, **settings):
    values = dict(prompt=PROMPT, negative_prompt="", model=None, scheduler="ddim", steps=6, guidance=7.5, seed=4,
                  width=None, height=None, eta=0.0, preview="full", every=1) | settings

    async def follow():
        updates = []
        async for update in comparer.stream(stop_signal, *first, *second, "progress", **values):
            updates.append(update)
            if on_update is not None:
                on_update(update)
        return updates

    return asyncio.run(follow())


def captions(columns_html: str) -> list[str]:
    return re.findall(r'data-caption="([^"]*)"', columns_html)


def test_variants_stream_one_after_another_and_each_is_its_own_run(comparer, embedded):
    updates = stream(comparer)
    comparison = updates[-1][2]
    assert comparison.labels == ["scheduler=ddim, guidance=1.0", "scheduler=ddim, guidance=7.5",
                                 "scheduler=heun, guidance=1.0", "scheduler=heun, guidance=7.5"]
    shown = [captions(columns) for _, columns, _ in updates]
    assert all(len(c) == 4 for c in shown)
    # live: the first variant steps while the others wait, then the second steps beside the first's end
    assert any(c[0].startswith("step ") and c[1:] == ["waiting"] * 3 for c in shown)
    assert any(c[0].startswith("done") and c[1].startswith("step ") and c[2] == "waiting" for c in shown)
    assert shown[-1] == ["done: 6 steps", "done: 6 steps", "done: 11 steps", "done: 11 steps"]
    for traj, label in zip(comparison.trajectories, comparison.labels):
        scheduler, guidance = (part.split("=")[1] for part in label.split(", "))
        alone = sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, steps=6, seed=4, scheduler=scheduler,
                                                        guidance=float(guidance)))
        np.testing.assert_array_equal(traj.final_image, alone.final_image)
        np.testing.assert_array_equal(traj.steps[2].x0_pred, alone.steps[2].x0_pred)
    # the session keeps x_t and x0 latents, and frames within one cache's bound shared by the variants
    assert all(s.noise_pred is None and s.noise_cond is None for t in comparison.trajectories for s in t.steps)
    assert all(t.noise_image is None and t.final_image is not None for t in comparison.trajectories)
    assert sum(t.frame_cache.nbytes for t in comparison.trajectories) <= DEFAULT_MAX_BYTES

    slider, columns, plot, note, finals = comparer.finish(comparison, "progress")
    assert slider["interactive"] is True and slider["value"] == 100
    assert finals.count("<img") == 4 and "1: scheduler=ddim, guidance=1.0" in finals
    assert set(plot["variant"]) == {*(f"{n}: {label}" for n, label in enumerate(comparison.labels, 1)), "slider"}
    first = re.search(r"\*\*(\d): (.*?)\*\* settles its layout first, (\d+)% of the way", note)
    settled = comparison.settled()
    shares = [(s + 1) / len(t.steps) for s, t in zip(settled, comparison.trajectories)]
    assert first and int(first.group(1)) == 1 + int(np.argmin(shares))

    for by in ("progress", "sigma"):  # the slider lines the variants up at its position
        columns, plot, note = comparer.show(comparison, 40, by)
        expected = at(comparison.trajectories, 0.4, by)
        assert [c.split(" · ")[0] for c in captions(columns)] == [
            f"step {i + 1}/{len(t.steps)}" for i, t in zip(expected, comparison.trajectories)]
        assert set(plot.loc[plot["variant"] == "slider", "position (%)"]) == {40.0}
    ddim, heun = (at(comparison.trajectories, 0.4, by) for by in ("progress", "sigma"))
    assert ddim != heun  # by noise level, Heun's doubled entries put it elsewhere than by progress
    frames = comparison.trajectories[2].step_frames(at(comparison.trajectories, 0.4, "sigma")[2],
                                                    comparer.session.decoder(comparison.trajectories[2]))
    assert frames[0].shape == tuple(comparison.trajectories[2].shapes["image"][1:]) + (3,)


def test_stop_ends_the_comparison_and_the_variants_share_one_runs_time(comparer, session):
    signal = StopSignal()
    updates = stream(comparer, ("scheduler", "ddim, euler, heun"), ("", ""), stop_signal=signal, steps=8,
                     on_update=lambda update: "step 2/" in update[1] and signal.event.set())
    comparison = updates[-1][2]
    assert [len(t.steps) for t in comparison.trajectories][1:] == [0, 0]  # the later variants never started
    assert 2 <= len(comparison.trajectories[0].steps) < 8
    assert "1 of 3 variants finished" not in updates[-1][0] and "0 of 3 variants finished" in updates[-1][0]
    assert "not run" in comparer.finish(comparison, "progress")[3]

    short = hosted(session, run_seconds=1e-3)  # the first variant uses it all up
    comparison = stream(short, ("scheduler", "ddim, euler"), ("", ""))[-1][2]
    first, second = comparison.trajectories
    assert "the run-time limit is" in " ".join(first.warnings)
    assert not second.steps and not second.warnings  # never started
    assert comparer.finish(comparison, "progress")[3].count("not run") == 2 - bool(first.steps)

    few = hosted(session, compare_steps=10)
    with pytest.raises(gr.Error, match=r"comparison of 2 variants with 6 \+ 6 = 12 steps is over this server's "
                                       r"limit; allowed: up to 10 steps in all \(SDVIZ_MAX_COMPARE_STEPS\)"):
        stream(few, ("scheduler", "ddim, euler"), ("", ""))


@pytest.mark.parametrize("first,second,message", [
    (("colour", "red, blue"), ("", ""), "vary 'colour=red, blue' is not NAME=VALUE,VALUE...; allowed names: scheduler"),
    (("steps", "4, many"), ("", ""), "vary steps: 'many' is not a value of steps; allowed: int values"),
    (("eta", ""), ("", ""), "vary 'eta=' is not NAME=VALUE"),
    (("scheduler", "ddim, bogus"), ("", ""), "unknown scheduler 'bogus'"),
    (("guidance", "1, 2, 3"), ("steps", "2, 3, 4"), "vary gives 9 variants (3 x 3); allowed: 2 to 8"),
    (("guidance", "1, 2"), ("guidance", "3, 4"), "names one setting twice"),
    (("steps", "2, 500"), ("", ""), "steps 500 is over this server's limit; allowed: 1..200"),
])
def test_bad_variants_are_refused_before_any_run(comparer, first, second, message):
    with pytest.raises(gr.Error, match=re.escape(message)):
        stream(comparer, first, second)


def test_downloads_and_the_values_offered(comparer):
    comparison = stream(comparer, ("steps", "3, 5"), ("", ""))[-1][2]
    files = asyncio.run(comparer.downloads(comparison))
    assert [f.rsplit("/", 1)[1] for f in files] == ["compare.png", "compare.json", "compare.gif", "compare.mp4",
                                                    "compare.html"]
    grid = Image.open(files[0])
    one = sdviz.workflows.compare.Comparison(comparison.trajectories[:1], comparison.labels[:1], previewers=[
        comparer.session.decoder(comparison.trajectories[0])]).grid()
    assert grid.width > one.width and grid.height == one.height  # a column more
    with pytest.raises(gr.Error, match="there is no comparison yet"):
        asyncio.run(comparer.downloads(None))
    assert example_values("scheduler").count(",") >= 2 and example_values("prompt", PROMPT).startswith(PROMPT)
    others = comparer.session.model(None).examples  # the model's own prompts: the first other than the one typed
    assert example_values("prompt", others[0], prompts=others) == f"{others[0]} {TEXT_SEPARATOR} {others[1]}"


def test_the_compare_tabs_map_and_where_the_variants_part(comparer):
    """The tab's map of the variants (a click moves the shared slider to the clicked variant's step) and their
    x0 difference from a chosen variant, with the step each parts at: the library's, with the session's decoders."""
    from sdviz.analysis.path import parting
    from sdviz.drawing.pathmap import nearest
    from ui.tabs.path import PathHandlers

    paths = PathHandlers(comparer.session)
    comparison = stream(comparer, ("guidance", "1, 7.5"), ("", ""), steps=8)[-1][2]
    assert isinstance(paths.compare_map(comparison, 50, "progress"), str)  # the picture's file
    picture, where, drawn = paths._compare_picture(comparison, 1.0, "progress")
    assert len(drawn) == 2 and {w[0] for w in where} == {0, 1}
    _, _, _, x, y = next(w for w in where if w == (1, "x_t", 3, w[3], w[4]))  # variant 2's x_t after step 4
    assert nearest(where, x, y) == (1, "x_t", 3)
    event = gr.EventData(None, {"index": [round(x), round(y)], "value": None})
    assert paths.compare_click(comparison, "progress", event) == round(100 * 3 / 7)  # 3 of its 7 steps along
    plot, note = paths.compare_parting(comparison, 1, "progress")
    first, second = comparison.trajectories
    expected = parting(first, second, (comparer.session.decoder(first), comparer.session.decoder(second)))
    assert set(plot["variant"]) == {"2: guidance=7.5"} and len(plot) == 8
    assert "variant 2 (guidance=7.5) parts from variant 1 at step 1 of 8" in note, note
    assert plot["value"].tolist() == expected["x0"] and expected["parted_at"] == 1
    plot, note = paths.compare_parting(comparison, 2, "sigma")  # against the other one, lined up by noise level
    assert set(plot["variant"]) == {"1: guidance=1.0"} and "from variant 2" in note
