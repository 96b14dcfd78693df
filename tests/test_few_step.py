"""Few-step models traced as exactly as the rest: LCM (its own pipeline, guidance embedded), TCD, the trailing
spacing of Turbo, Lightning and Hyper-SD, a model's own scheduler used as its folder names it, never replaced.

Each run's final image equals diffusers' own pipeline's for the same seed; each step's x0 is the estimate from
its denoiser output at its own alpha_bar (never what a few-step scheduler returns beside its sample).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from diffusers import (
    LatentConsistencyModelImg2ImgPipeline,
    LatentConsistencyModelPipeline,
    StableDiffusionPipeline,
)
from PIL import Image

import sdviz
from sdviz import Settings
from sdviz.sampling import schedulers
from sdviz.sampling.errors import InputError
from sdviz.sampling.loras import Lora
from sdviz.sampling.trajectory import Trajectory
from tests.families import build_lora, with_scheduler
from tests.helpers import sdviz_main

PROMPT = "a large red circle on the left on a blue background"


def pipeline_image(pipeline_class, folder, seed: int, **call) -> tuple[np.ndarray, np.ndarray]:
    """(final latents, uint8 image) of diffusers' own pipeline loaded from the folder, with its own scheduler."""
    pipe = pipeline_class.from_pretrained(str(folder), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent", **call).images
    pipe = pipeline_class.from_pretrained(str(folder), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **call).images[0]
    return latents[0].numpy(), (image * 255).round().astype(np.uint8)


def assert_same(traj, latents, image):
    np.testing.assert_array_equal(traj.steps[-1].x_next, latents)
    difference = np.abs(traj.final_image.astype(int) - image.astype(int))
    assert difference.max() <= 1, f"max pixel difference {difference.max()}"


def alpha_bar_x0(record, alphas_cumprod, prediction_type="epsilon") -> np.ndarray:
    """x0 from the step's input and its denoiser output at its own alpha_bar, as the schedulers' papers write it."""
    a = float(alphas_cumprod[int(record.timestep)])
    if prediction_type == "sample":
        return record.noise_pred
    return (record.x_t - math.sqrt(1 - a) * record.noise_pred) / math.sqrt(a)


@pytest.fixture(scope="module")
def lcm_dir(family_dirs):
    return family_dirs["lcm"]


@pytest.fixture(scope="module")
def lcm(lcm_dir):
    return sdviz.load_model(str(lcm_dir))


@pytest.fixture(scope="module")
def own(embedded, tmp_path_factory):
    """The embedded shapes model in folders that name a few-step scheduler as their own."""
    def folder(name, scheduler_class, **config):
        return with_scheduler(embedded, tmp_path_factory.mktemp(name), scheduler_class, **config)
    return {
        "tcd": folder("tcd", "TCDScheduler"),
        "turbo": folder("turbo", "EulerAncestralDiscreteScheduler", timestep_spacing="trailing"),
        "lightning-x0": folder("x0", "EulerDiscreteScheduler", timestep_spacing="trailing", prediction_type="sample"),
        "singlestep": folder("singlestep", "DPMSolverSinglestepScheduler"),
        "edm": folder("edm", "EDMEulerScheduler"),
    }


def test_lcm_matches_its_pipeline_with_guidance_embedded(lcm, lcm_dir):
    """LatentConsistencyModelPipeline: no unconditional pass, the guidance as the UNet's input (w = g - 1);
    each step's x0 from the UNet's output at its own alpha_bar, and LCM's boundary-conditioned `denoised` beside
    it, kept and named apart."""
    assert lcm.facts.family == "lcm" and lcm.facts.scheduler == "lcm" and lcm.facts.guidance_embedded
    assert "embedded" in lcm.facts.added
    traj = sdviz.generate(lcm, Settings(prompt=PROMPT, steps=4, guidance=8.0, seed=3))
    assert len(traj.steps) == 4 and traj.steps[0].noise_uncond is None
    assert_same(traj, *pipeline_image(LatentConsistencyModelPipeline, lcm_dir, 3, num_inference_steps=4,
                                      guidance_scale=8.0))
    # the embedded guidance is an input: another scale is another image, with still one pass
    other = sdviz.generate(lcm, Settings(prompt=PROMPT, steps=4, guidance=2.0, seed=3))
    assert not np.array_equal(other.steps[-1].x_next, traj.steps[-1].x_next)
    scheduler = schedulers.create("lcm", lcm.scheduler_config)
    for record in traj.steps:
        np.testing.assert_allclose(record.x0_pred, alpha_bar_x0(record, scheduler.alphas_cumprod), atol=2e-5)
        c_skip, c_out = scheduler.get_scalings_for_boundary_condition_discrete(int(record.timestep))
        np.testing.assert_allclose(record.denoised, float(c_skip) * record.x_t + float(c_out) * record.x0_pred,
                                   atol=2e-5)
        assert np.abs(record.denoised - record.x0_pred).max() > 0 or record.index == 3
    np.testing.assert_array_equal(traj.steps[-1].x_next, traj.steps[-1].denoised)  # the last step lands on it


def test_lcm_img2img_matches_its_pipeline(lcm, lcm_dir):
    """LatentConsistencyModelImg2ImgPipeline sets LCM's schedule for the strength (not the SD pipeline's slice)."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    traj = sdviz.generate(lcm, Settings(prompt=PROMPT, steps=4, guidance=6.0, seed=1, strength=0.5), init_image=image)
    scheduler = schedulers.create("lcm", lcm.scheduler_config)
    scheduler.set_timesteps(4, strength=0.5)
    assert [s.timestep for s in traj.steps] == [float(t) for t in scheduler.timesteps]
    assert_same(traj, *pipeline_image(LatentConsistencyModelImg2ImgPipeline, lcm_dir, 1, image=image,
                                      num_inference_steps=4, guidance_scale=6.0, strength=0.5))


def test_a_folders_own_few_step_scheduler_is_used_as_it_names_it(embedded, own):
    """TCD (its gamma through eta, as the pipeline passes eta), SD-Turbo's trailing Euler ancestral at guidance 0
    in one step, a Lightning-style sample-predicting checkpoint, and a scheduler sdviz does not register
    (DPM-Solver single-step): each the folder's own, each equal to StableDiffusionPipeline with it."""
    cases = [("tcd", "tcd", dict(steps=4, guidance=3.0, eta=0.3)),
             ("turbo", "euler_a_trailing", dict(steps=1, guidance=0.0)),
             ("lightning-x0", "euler_trailing", dict(steps=2, guidance=0.0)),
             ("singlestep", "DPMSolverSinglestepScheduler", dict(steps=5, guidance=4.0))]
    for case, name, run in cases:
        model = sdviz.load_model(str(own[case]))
        assert model.facts.scheduler == name, case
        traj = sdviz.generate(model, Settings(prompt=PROMPT, seed=4, **run))
        assert traj.settings.scheduler == name
        assert_same(traj, *pipeline_image(StableDiffusionPipeline, own[case], 4, num_inference_steps=run["steps"],
                                          guidance_scale=run["guidance"], eta=run.get("eta", 0.0)))
        alphas = schedulers.create(name, model.scheduler_config).alphas_cumprod
        prediction = model.scheduler_config["prediction_type"]
        if name != "euler_a_trailing":  # Euler's sample is variance-exploding: its x_t is not the UNet's input
            for record in traj.steps:
                np.testing.assert_allclose(record.x0_pred, alpha_bar_x0(record, alphas, prediction), atol=2e-5)
        assert all(record.denoised is None for record in traj.steps), case  # TCD's noised sample is not kept as x0
        if run["steps"] == 1:  # one trailing step lands on x0 itself
            np.testing.assert_allclose(traj.steps[0].x_next, traj.steps[0].x0_pred, atol=2e-4)


def test_a_scheduler_sdviz_cannot_trace_is_refused_by_name(embedded, own):
    with pytest.raises(InputError, match="scheduler 'EDMEulerScheduler' cannot be traced by sdviz"):
        sdviz.load_model(str(own["edm"]))
    with pytest.raises(InputError, match="scheduler 'EDMEulerScheduler' cannot be traced"):
        sdviz.generate(embedded, Settings(prompt=PROMPT, steps=2, scheduler="EDMEulerScheduler"))
    with pytest.raises(InputError, match=r"unknown scheduler 'NoSuchScheduler'; allowed: ddim, .*lcm, tcd"):
        sdviz.generate(embedded, Settings(prompt=PROMPT, steps=2, scheduler="NoSuchScheduler"))
    # a registered class with a config it would override is the model's own class, exactly: no override
    assert schedulers.model_default("sd", {"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3,
                                           "algorithm_type": "dpmsolver++"}) == "DPMSolverMultistepScheduler"


def test_cli_renders_a_tcd_folder_with_tcd(own, tmp_path):
    """The case a user met: a folder whose scheduler is TCD rendered with DDIM, silently. Now with TCD, equal to
    the pipeline; its trajectory says so and loads back with it."""
    out = tmp_path / "run"
    result = sdviz_main("render", "--model", str(own["tcd"]), "--prompt", PROMPT, "--steps", "2", "--guidance",
                        "1", "--eta", "0.3", "--seed", "6", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "trajectory.json").read_text())["settings"]["scheduler"] == "tcd"
    traj = Trajectory.load(out)
    latents, image = pipeline_image(StableDiffusionPipeline, own["tcd"], 6, num_inference_steps=2,
                                    guidance_scale=1.0, eta=0.3)
    np.testing.assert_array_equal(traj.steps[-1].x_next, latents)
    assert np.abs(np.asarray(Image.open(out / "final.png")).astype(int) - image.astype(int)).max() <= 1


@pytest.fixture(scope="module")
def lora_dir(embedded, tmp_path_factory):
    return build_lora(embedded, tmp_path_factory.mktemp("lcm-lora-like"))


def lora_reference(folder, lora_dir, scale: float, scheduler_class: str, **call) -> np.ndarray:
    """Final latents of StableDiffusionPipeline with the LoRA loaded by diffusers (not fused) at `scale`."""
    import diffusers

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), use_safetensors=True)
    pipe.scheduler = getattr(diffusers, scheduler_class).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora_dir), adapter_name="lora")
    pipe.set_adapters(["lora"], adapter_weights=[scale])
    seed = call.pop("seed")
    return pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent", **call).images[0]


def test_a_lora_runs_on_its_own_copy_and_the_shared_model_is_untouched(embedded, lora_dir):
    """A LoRA as LCM-LoRA is used: fused at its scale into the app's cache as a model of its own, stepped with
    LCM at guidance 1, equal to diffusers' pipeline with the LoRA loaded; the shared base model keeps every
    weight and gives the same run as before, bit for bit."""
    from sdviz.sampling.cache import ModelCache
    from sdviz.sampling.models import SHAPES_MODEL

    cache = ModelCache(None, most=3, pinned=str(SHAPES_MODEL))
    base = cache.get(str(SHAPES_MODEL))
    weights = {name: value.clone() for name, value in base.unet.state_dict().items()}
    plain = Settings(prompt=PROMPT, steps=4, guidance=1.0, seed=2, scheduler="lcm")
    before = sdviz.generate(base, plain)
    lora = Lora.parse(f"{lora_dir}:0.7")
    fast = cache.get(str(SHAPES_MODEL), (lora,))
    assert fast is cache.get(str(SHAPES_MODEL), (lora,)) and fast.name == f"sdviz-shapes + {lora_dir.name}:0.7"
    assert fast.vae is base.vae and fast.unet is not base.unet  # the VAE shared, the changed module its own
    assert fast.tokenizer is base.tokenizer and fast.text_lock is base.text_lock  # one lock for the shared tokenizer
    traj = sdviz.generate(fast, plain)
    assert traj.settings.model == fast.name
    reference = lora_reference(SHAPES_MODEL, lora_dir, 0.7, "LCMScheduler", num_inference_steps=4,
                               guidance_scale=1.0, seed=2)
    np.testing.assert_allclose(traj.steps[-1].x_next, reference.numpy(), atol=1e-4)
    assert np.abs(traj.steps[-1].x_next - before.steps[-1].x_next).max() > 0.05  # the LoRA changed the run
    after = base.unet.state_dict()
    assert set(after) == set(weights) and all(torch.equal(weights[name], after[name]) for name in weights)
    np.testing.assert_array_equal(sdviz.generate(base, plain).steps[-1].x_next, before.steps[-1].x_next)


@pytest.mark.parametrize("text, message", [
    ("weights.bin", "lora 'weights.bin' does not exist"),
    ("{dir}/model.pt", "is a pickle file; sdviz loads LoRAs from safetensors only"),
    ("{dir}", "holds no .safetensors file"),
    ("{lora}:9", "lora scale 9 is out of range; allowed: [-4, 4]"),
])
def test_a_lora_that_is_not_safetensors_is_refused_by_name(tmp_path, lora_dir, text, message):
    (tmp_path / "model.pt").write_bytes(b"pickle")
    with pytest.raises(InputError, match=re.escape(message)):
        Lora.parse(text.format(dir=tmp_path, lora=lora_dir))


def test_cli_and_app_menu_run_a_lora(embedded, lora_dir, tmp_path, monkeypatch):
    """`render --lora DIR:SCALE` and SDVIZ_LORAS's menu entry run the adapted model, the same run."""
    from sdviz.sampling.models import SHAPES_MODEL
    from ui.config import AppConfig

    out = tmp_path / "run"
    result = sdviz_main("render", "--model", str(SHAPES_MODEL), "--lora", f"{lora_dir}:0.5", "--prompt", PROMPT,
                        "--steps", "3", "--guidance", "1", "--scheduler", "lcm", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    saved = Trajectory.load(out)
    assert saved.settings.model == f"sdviz-shapes + {lora_dir.name}:0.5"
    monkeypatch.setenv("SDVIZ_MODEL", str(SHAPES_MODEL))
    monkeypatch.setenv("SDVIZ_LORAS", f"{lora_dir}:0.5")
    config = AppConfig.from_env()
    assert list(config.menu())[:2] == ["sdviz-shapes", saved.settings.model]
    source, loras = config.menu()[saved.settings.model]
    from sdviz.sampling.cache import ModelCache

    model = ModelCache(None, most=2).get(source, loras)
    traj = sdviz.generate(model, saved.settings.asked())
    np.testing.assert_allclose(traj.steps[-1].x_next, saved.steps[-1].x_next, atol=1e-6)


def test_every_view_takes_a_one_step_run(session, tmp_path):
    """A 1-step Turbo-style run (trailing Euler ancestral at guidance 0): the CLI's files and page, the explorer,
    its guidance panel (which says why there is nothing to decompose), the walk, and a fork from its only step."""
    from sdviz.sampling.fork import Fork
    from ui.tabs.explain import ExplainHandlers
    from ui.tabs.explore import ExploreHandlers
    from ui.walk import WALK_PANELS

    out = tmp_path / "one"
    result = sdviz_main("render", "--prompt", PROMPT, "--steps", "1", "--guidance", "0", "--scheduler",
                        "euler_a_trailing", "--attention", "--html", "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("run.html", "trajectory.gif", "trajectory.mp4", "filmstrip.png", "attention.npz", "x0/000.png"):
        assert (out / name).stat().st_size > 0, name
    saved = Trajectory.load(out)
    assert len(saved.steps) == 1 and saved.distance_to_final["x0"][-1] == pytest.approx(0.0, abs=0.01)
    run = session.build_run(None, True, prompt=PROMPT, steps=1, guidance=0.0, scheduler="euler_a_trailing")
    for _ in run:
        pass
    traj = run.trajectory
    explorer, explainer = ExploreHandlers(session), ExplainHandlers(session)
    shown = explorer.show_step(traj, 1, None, "all", "this step")
    assert shown[0] is not None and shown[1] is not None and shown[3]["visible"] is False  # no LCM estimate
    assert "each step is a jump" in shown[5]  # the few-step sentence under the step
    views = explorer.step_views(traj, 1)
    assert views[0] is None and "guidance scale 0 ≤ 1" in views[4] and "nothing to decompose" in views[4]
    panels = dict(zip(WALK_PANELS, explainer.walk(traj)))
    assert "each step is a jump" in panels["text-3"] and panels["denoise"] is not None
    fork = sdviz.generate(session.model(None), traj.settings.asked(), fork=Fork(traj, 1))
    np.testing.assert_array_equal(fork.steps[0].x_next, traj.steps[0].x_next)


def test_lcm_shown_beside_its_denoised_and_compared_with_ddim_by_sigma(family_dirs, tmp_path):
    """The explorer shows LCM's denoised beside x0, named; the walk says what a consistency model does; an LCM
    model's 4 steps against DDIM's 20 line up by noise level, and the comparison's page is written."""
    from sdviz.analysis.align import at, positions
    from sdviz.sampling.cache import ModelCache
    from ui.config import AppConfig
    from ui.files import FileStore
    from ui.session import Session
    from ui.tabs.explain import ExplainHandlers
    from ui.tabs.explore import ExploreHandlers
    from ui.walk import WALK_PANELS
    from ui.words import say

    folder = str(family_dirs["lcm"])
    files = FileStore(600, 2**30)
    session = Session(AppConfig(default_model=folder, models=(folder,)), ModelCache(None, most=1), files)
    try:
        run = session.build_run(None, False, prompt=PROMPT, steps=4, guidance=8.0, width=32, height=32)
        for _ in run:
            pass
        traj = run.trajectory
        shown = ExploreHandlers(session).show_step(traj, 2, None, "all", "this step")
        assert shown[3]["visible"] is True and shown[3]["value"] is not None
        assert say("explore.denoised").startswith("LCM's denoised") and "not from x0 itself" in shown[5]
        views = ExploreHandlers(session).step_views(traj, 2)
        assert "takes the guidance scale as an input (w = g − 1 = 7)" in views[4]
        panels = dict(zip(WALK_PANELS, ExplainHandlers(session).walk(traj)))
        assert "noises it again to the next, lower level (consistency)" in panels["text-3"]
    finally:
        files.remove()
    comparison = sdviz.compare(sdviz.load_model(folder), Settings(prompt=PROMPT, width=32, height=32, seed=2),
                               {"scheduler": ["lcm", "ddim"], "steps": [4, 20]}, by="sigma", out=tmp_path / "cmp",
                               page=True)
    assert (tmp_path / "cmp" / "compare.html").stat().st_size > 0
    lcm4 = comparison.trajectories[comparison.labels.index("scheduler=lcm, steps=4")]
    ddim20 = comparison.trajectories[comparison.labels.index("scheduler=ddim, steps=20")]
    runs = [lcm4, ddim20]
    for index, place in enumerate(positions(runs, "sigma")[0]):  # each LCM step meets DDIM's nearest in noise level
        picked = at(runs, place, "sigma")
        nearest = int(np.abs(np.log([s.sigma for s in ddim20.steps]) - np.log(lcm4.steps[index].sigma)).argmin())
        assert picked == [index, nearest]
