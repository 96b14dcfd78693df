"""Editing, traced: CycleDiffusion as diffusers' CycleDiffusionPipeline runs it, every step kept, the source
image's chain beside the edited one; and the settings an edit refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import CycleDiffusionPipeline
from PIL import Image

import sdviz
from sdviz.analysis.edit import departure
from sdviz.drawing.edit import sheet as edit_sheet
from sdviz.drawing.edit import source_frame
from sdviz.drawing.views import difference
from sdviz.sampling import schedulers
from tests.test_equivalence import assert_same
from training import scenes

SOURCE = "a large yellow square in the center on a purple background"
TARGET = "a large red circle in the center on a purple background"


@pytest.fixture(scope="module")
def init_image():
    """The source image: what SOURCE says, drawn by the embedded model's scene renderer."""
    return Image.fromarray(scenes.render(scenes.make_scene(("yellow", "square", "large", "center", "purple"),
                                                           np.random.default_rng(0)))[0])


def cycle_reference(model, image, seed, strength, steps=10, guidance=3.0, source_guidance=1.0, eta=0.1):
    pipe = model.pipeline(schedulers.create("ddim", model.scheduler_config), CycleDiffusionPipeline)
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(prompt=TARGET, source_prompt=SOURCE, image=image, strength=strength, num_inference_steps=steps,
                   guidance_scale=guidance, source_guidance_scale=source_guidance, eta=eta, output_type="latent",
                   generator=torch.Generator().manual_seed(seed)).images
    decoded = model.vae.decode(latents / model.vae.config.scaling_factor).sample
    return latents[0].numpy(), np.asarray(pipe.image_processor.postprocess(decoded, output_type="pil")[0])


@pytest.mark.parametrize("seed,strength", [(0, 0.5), (1, 0.8)])
def test_an_edit_equals_cycle_diffusion_and_keeps_the_source_chain(embedded, init_image, seed, strength):
    settings = sdviz.Settings(prompt=TARGET, source_prompt=SOURCE, scheduler="ddim", steps=10, guidance=3.0,
                              source_guidance=1.0, eta=0.1, strength=strength, seed=seed)
    traj = sdviz.generate(embedded, settings, init_image=init_image)
    latents, image = cycle_reference(embedded, init_image, seed, strength)
    assert_same(traj, latents, image)
    assert len(traj.steps) == int(10 * strength) and all(s.source_x_next is not None for s in traj.steps)
    # the source chain ends at the source image's own latents; the edit departs from it
    source_end = traj.steps[-1].source_x_next
    edit_gap = [float(np.abs(s.x_next - s.source_x_next).mean()) for s in traj.steps]
    assert edit_gap[-1] > edit_gap[0] > 0
    plain = sdviz.generate(embedded, sdviz.Settings(prompt=TARGET, scheduler="ddim", steps=10, guidance=3.0,
                                                    eta=0.1, strength=strength, seed=seed), init_image=init_image)
    assert not np.array_equal(plain.steps[-1].x_next, traj.steps[-1].x_next)  # not img2img: the source matters
    assert source_end.shape == traj.steps[-1].x_next.shape


def test_unguided_edit_equals_cycle_diffusion(embedded, init_image):
    settings = sdviz.Settings(prompt=TARGET, source_prompt=SOURCE, scheduler="ddim", steps=8, guidance=1.0,
                              eta=0.3, strength=0.75, seed=3)
    traj = sdviz.generate(embedded, settings, init_image=init_image)
    assert_same(traj, *cycle_reference(embedded, init_image, 3, 0.75, steps=8, guidance=1.0, eta=0.3))


@pytest.mark.parametrize("change,message", [
    (dict(scheduler="euler"), "scheduler 'euler' cannot edit: CycleDiffusion samples DDIM's posterior; allowed: ddim"),
    (dict(negative_prompt="blurry"), "negative prompt: an edit contrasts both prompts with the empty prompt"),
    (dict(source_guidance=-1.0), "source guidance -1.0 is out of range"),
])
def test_what_an_edit_refuses(embedded, init_image, change, message):
    settings = sdviz.Settings(**{"prompt": TARGET, "source_prompt": SOURCE, "scheduler": "ddim", **change})
    with pytest.raises(ValueError, match=message):
        sdviz.Run(embedded, settings, init_image=init_image)
    with pytest.raises(ValueError, match="an edit starts from an image"):
        sdviz.Run(embedded, sdviz.Settings(prompt=TARGET, source_prompt=SOURCE))
    edit = sdviz.Settings(prompt=TARGET, source_prompt=SOURCE, scheduler="ddim", steps=4)
    parent = sdviz.generate(embedded, edit, init_image=init_image)
    with pytest.raises(ValueError, match="an edit cannot be forked yet"):
        sdviz.Run(embedded, edit, fork=sdviz.sampling.fork.Fork(parent, 1))


def test_cli_edits_an_image_and_keeps_the_source_chain(embedded, init_image, tmp_path, capsys):
    from sdviz import cli
    from sdviz.sampling.trajectory import Trajectory

    init_image.save(tmp_path / "source.png")
    args = ["render", "--init-image", str(tmp_path / "source.png"), "--source-prompt", SOURCE, "--prompt", TARGET,
            "--scheduler", "ddim", "--steps", "10", "--strength", "0.5", "--guidance", "3", "--eta", "0.1",
            "--seed", "0", "--model", embedded.source]
    assert cli.main([*args, "--out", str(tmp_path / "edit")]) == 0
    saved = Trajectory.load(tmp_path / "edit")
    assert saved.settings.source_prompt == SOURCE and all(s.source_x_next is not None for s in saved.steps)
    np.testing.assert_array_equal(saved.steps[-1].x_next, cycle_reference(embedded, init_image, 0, 0.5)[0])
    assert Image.open(tmp_path / "edit" / "edit.png").height > 3 * init_image.height  # source, edit, difference
    assert cli.main([*args, "--scheduler", "euler", "--out", str(tmp_path / "bad")]) == 2
    assert "scheduler 'euler' cannot edit" in capsys.readouterr().err


def test_where_the_edit_departs_from_its_source(embedded, init_image):
    """The departure curve is each step's latent gap; the sheet draws the source chain, the edit and their
    difference, which is dark where the edit kept the image (the background) and bright where it changed it."""
    from sdviz.sampling.previews import Previewer

    settings = sdviz.Settings(prompt=TARGET, source_prompt=SOURCE, scheduler="ddim", steps=10, guidance=3.0,
                              strength=0.8, seed=0)
    traj = sdviz.generate(embedded, settings, init_image=init_image)
    gaps = departure(traj)
    assert gaps == [float(np.abs(s.x_next - s.source_x_next).mean()) for s in traj.steps] and min(gaps) > 0
    previewer = Previewer(embedded, "full", traj.settings.height, traj.settings.width)
    last = len(traj.steps) - 1
    source = source_frame(traj, last, previewer)
    np.testing.assert_array_equal(source, previewer.decode(torch.from_numpy(traj.steps[last].source_x_next)[None])[0])
    change = difference(traj.final_image, source)[..., 0].astype(float)
    h, w = change.shape
    assert change[h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean() > 3 * change[:h // 8].mean()  # the shape, not the sky
    sheet = edit_sheet(traj, previewer, at=3)
    assert sheet.height > 3 * traj.final_image.shape[0]  # three rows
    plain = sdviz.generate(embedded, sdviz.Settings(prompt=TARGET, steps=2))
    with pytest.raises(ValueError, match="this run is not an edit"):
        departure(plain)


def test_the_edit_tab_streams_an_edit_with_ddim(session, runner, embedded, init_image, tmp_path):
    """The Edit tab's handler: the image, what it shows and what it should show; DDIM whatever the menu says;
    the run equals the core's edit. An empty source prompt is refused before any model work."""
    import asyncio

    import gradio as gr

    from ui.session import StopSignal
    from ui.tabs.explore import ExploreHandlers
    from ui.tabs.run import TRAJECTORY

    init_image.save(tmp_path / "source.png")

    def stream(source):
        async def follow():
            updates = []
            async for update in runner.stream_edit(StopSignal(), prompt=TARGET, scheduler="euler", steps=10,
                                                     guidance=3.0, eta=0.1, attention=True,
                                                     init_image=str(tmp_path / "source.png"), strength=0.5,
                                                     source_prompt=source):
                updates.append(update)
            return updates
        return asyncio.run(follow())

    traj = stream(SOURCE)[-1][TRAJECTORY]
    assert traj.settings.scheduler == "ddim" and traj.settings.source_prompt == SOURCE
    np.testing.assert_array_equal(traj.steps[-1].x_next, cycle_reference(embedded, init_image, 0, 0.5)[0])
    assert traj.attention is not None and "circle</w>" in traj.attention.tokens
    explorer = ExploreHandlers(session)
    view, plot, note, box = explorer.edit_step(traj, len(traj.steps))  # drawn with the slider's step
    assert view and "after step 1" in note and box["open"] is True
    assert all(isinstance(kept, type(gr.skip())) for kept in explorer.edit_closed(traj))  # an edit's stays open
    with pytest.raises(gr.Error, match="source prompt is empty"):
        stream("  ")
