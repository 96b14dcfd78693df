"""The explaining panels' handlers on real runs of the app's own streaming handler: what each panel
shows is the run's (the same frames, numbers and marks as the core computes), for txt2img and img2img."""

from __future__ import annotations

import asyncio
import re

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from sdviz.analysis import schedule
from sdviz.analysis.distance import SETTLED_DISTANCE, settled_step
from sdviz.analysis.forward import img2img_start, latent_space
from sdviz.analysis.guidance import guidance_example
from sdviz.drawing.views import prompt_effect
from sdviz.sampling.previews import Previewer
from ui import plots
from ui.tabs.explain import ExplainHandlers
from ui.tabs.explore import ExploreHandlers
from ui.walk import WALK_PANELS

PROMPT = "a large red circle on the left on a blue background"


@pytest.fixture(scope="module")
def explainer(session):
    return ExplainHandlers(session)


@pytest.fixture(scope="module")
def explorer(session):
    return ExploreHandlers(session)


def run(runner, init_image=None, **settings):
    """The page's streaming handler to the end; the trajectory the session keeps."""
    values = dict(prompt=PROMPT, negative_prompt="", model=runner.session.config.default_name, scheduler="ddim",
                  steps=12, guidance=7.5, seed=1, width=None, height=None, eta=0.0, preview="full", every=1,
                  attention=True) | settings

    async def follow():
        last = None
        stream = (runner.stream(None, **values) if init_image is None else
                  runner.stream_img2img(None, **values, init_image=init_image, strength=0.5))
        async for update in stream:
            last = update
        return last[-1]

    return asyncio.run(follow())


def picture(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_step_views_decompose_guidance_at_the_slider_step(session, runner, explorer):
    traj = run(runner)
    uncond, cond, guided, effect, formula, schedule_plot, compared, distance_plot = explorer.step_views(traj, 3)
    record = traj.steps[2]
    expected = Previewer(session.model(None), "full", 64, 64).guidance_frames(record)
    np.testing.assert_array_equal(picture(uncond), expected[0])
    np.testing.assert_array_equal(picture(cond), expected[1])
    np.testing.assert_array_equal(picture(guided), traj.step_frames(2, session.decoder(traj))[1])
    np.testing.assert_array_equal(picture(effect), prompt_effect(*expected)[0])
    example = guidance_example(record, 7.5)
    assert f"{example['uncond']:.3f} + 7.5 × ({example['cond']:.3f} − {example['uncond']:.3f})" in formula
    marker = schedule_plot[schedule_plot["curve"] == "this step"]
    assert list(marker["step"]) == [3, 3]
    assert sorted(schedule_plot["curve"].unique()) == sorted(plots.SCHEDULE_COLOURS)
    sigmas = schedule_plot[schedule_plot["curve"].str.startswith("log10 σ")]["value"]
    np.testing.assert_allclose(10 ** sigmas.to_numpy(), [s.sigma for s in traj.steps], rtol=1e-9)
    assert traj.distance_to_final is None and distance_plot == gr.skip()  # distances come after the run


def test_after_run_measures_where_the_picture_is_decided(session, runner, explainer, explorer):
    traj = run(runner, scheduler="dpmpp_2m_karras")
    assert traj.distance_to_final is None  # measured when the Noise schedule tab is opened, not after every run
    distances, decided = explainer.decided(traj, 12)
    assert len(traj.distance_to_final["x0"]) == 12 and traj.distance_to_final["x_t"][-1] == 0.0
    compared = explorer.step_views(traj, 4)[6]
    assert set(compared["scheduler"]) == {*schedule.COMPARED, "this step"}
    assert list(compared[compared["scheduler"] == "this step"]["share of steps done"]) == [3 / 11] * 2
    karras = compared[compared["scheduler"] == "dpmpp_2m_karras"]["value"].to_numpy()
    table = schedule.schedule_table("dpmpp_2m_karras", 12, session.model(None).scheduler_config)
    np.testing.assert_allclose(10 ** karras, [r["sigma"] for r in table], rtol=1e-9)
    settled = settled_step(traj.distance_to_final["x0"])
    assert list(distances[distances["curve"] == "layout settled"]["step"]) == [settled + 1] * 2
    assert list(distances[distances["curve"] == "this step"]["step"]) == [12, 12]
    assert f"step {settled + 1} of 12" in decided and str(SETTLED_DISTANCE) in decided


def test_forward_and_latent_panels_from_the_run_and_from_an_upload(session, runner, explainer, tmp_path):
    traj = run(runner)
    sheet, note = explainer.forward(traj)
    assert picture(sheet).shape[1] > picture(sheet).shape[0] and "ᾱ goes from" in note
    assert "img2img" not in note
    sheet, note = explainer.latent(traj)
    space = latent_space(session.model(None), traj.final_image)
    assert f"{space.compression:g}× fewer" in note and f"{space.psnr:.1f} dB" in note
    upload = tmp_path / "stripes.png"
    stripes = np.zeros((40, 90, 3), np.uint8)
    stripes[:, ::6] = 255
    Image.fromarray(stripes).save(upload)
    _, uploaded = explainer.latent(traj, str(upload))
    assert uploaded != note  # the upload, not the run's image, was encoded
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(gr.Error, match="image 'broken.png' is not a readable image"):
        explainer.forward(traj, str(broken))


@pytest.mark.parametrize("scheduler, order", [("ddim", 1), ("heun", 2)])
def test_img2img_marks_where_the_run_started(session, runner, explainer, explorer, scheduler, order):
    start = np.zeros((64, 64, 3), np.uint8)
    start[:, 32:] = (240, 220, 20)
    traj = run(runner, init_image=start, steps=10, scheduler=scheduler)
    entries = len(schedule.schedule_table(scheduler, 10, session.model(None).scheduler_config))
    began = img2img_start(10, 0.5, order)
    assert len(traj.steps) == entries - began  # the run is the schedule's tail
    _, note = explainer.forward(traj)
    assert f"started at entry {began + 1} of {entries}" in note
    uncond, cond, *_ = explorer.step_views(traj, 2)
    assert uncond is not None and cond is not None
    explainer.decided(traj, len(traj.steps))
    assert traj.distance_to_final["x_t"][-1] == 0.0
    compared = explorer.step_views(traj, 1)[6]  # the run's first step sits at its start in the full schedule
    assert list(compared[compared["scheduler"] == "this step"]["share of steps done"]) == [began / (entries - 1)] * 2


def test_panels_at_the_runs_own_size(session, runner, explainer):
    traj = run(runner, width=96, height=64, steps=6)
    _, note = explainer.latent(traj)
    assert "(64 × 96 × 3)" in note
    sheet, _ = explainer.forward(traj)
    model = session.model(None)
    space = latent_space(model, traj.final_image, 96, 64)
    assert space.image.shape == traj.final_image.shape
    assert space.latents.shape == model.facts.latent_shape(64, 96)
    assert picture(sheet).shape[1] > 1.4 * picture(explainer.forward(run(runner, steps=6))[0]).shape[1]


def test_unguided_runs_and_the_walk(runner, explainer, explorer):
    plain = run(runner, guidance=1.0, attention=False, steps=6)
    uncond, cond, guided, effect, formula, *_ = explorer.step_views(plain, 2)
    assert uncond is None and cond is None and effect is None and guided is not None
    assert "did not use classifier-free guidance" in formula
    panels = dict(zip(WALK_PANELS, explainer.walk(plain)))
    assert panels["attention"] is None and "Run with attention capture on" in panels["attention-note"]
    traj = run(runner, scheduler="kdpm2", steps=6)  # second order: 11 entries
    assert len(traj.steps) == 11
    panels = dict(zip(WALK_PANELS, explainer.walk(traj)))
    assert all(panels.values()), [name for name, value in panels.items() if not value]
    tokens, width = traj.shapes["token_embeddings"]
    assert f"<b>{tokens} × {width}</b>" in panels["tokens"]
    assert f"{traj.facts.parameters['unet']:,}" in panels["components"]
    assert "the word that drew the most attention" in panels["attention-note"]
    assert "UNet" in panels["text-1"] and "cross-attention" in panels["text-6"]  # the walk's words: SD's UNet
    assert "as a path" in panels["path-note"] and "of 11" in panels["path-note"]  # the map, with its settled step


def test_fork_from_the_page_continues_the_sessions_run(runner, explorer):
    parent = run(runner, steps=8)

    def fork(step, **changes):
        values = dict(prompt=PROMPT, negative_prompt="", guidance=7.5, eta=0.0, preview="full", every=1,
                      attention=False) | changes

        async def follow():
            last = None
            async for update in runner.stream_fork(None, parent, step, **values):
                last = update
            return last

        return asyncio.run(follow())

    same = fork(4)
    assert same[-1] is parent and same[-2].settings.forked_from["at"] == 4
    np.testing.assert_array_equal(same[-2].final_image, parent.final_image)  # nothing changed: the parent
    _, _, note, opened = explorer.fork_view(same[-2], parent)
    assert "nothing changed" in note
    other = fork(3, prompt="a small yellow triangle at the top on a purple background")[-2]
    np.testing.assert_array_equal(other.steps[2].x_next, parent.steps[2].x_next)
    assert not np.array_equal(other.final_image, parent.final_image)
    sheet, plot, note, _ = explorer.fork_view(other, parent)
    assert opened == gr.update(open=True)
    assert "Forked after step 3 of 8" in note and "yellow triangle" in note
    assert set(plot["curve"]) == {"parent: predicted x0 to its final image", "fork: predicted x0 to its final image",
                                  "fork point", "mean |x0 − x0′|"}  # and how far the fork's x0 lies from the parent's
    parted = re.search(r"The fork parts from its parent at step (\d+)", note)
    assert parted and int(parted.group(1)) > 3, note  # where they part: after the steps it kept
    with pytest.raises(gr.Error, match="there is no run to fork yet"):
        asyncio.run(runner.stream_fork(parent=None, step=1, prompt=PROMPT).__anext__())
    with pytest.raises(gr.Error, match="guidance 1000.0 is out of range"):
        fork(2, guidance=1000.0)
