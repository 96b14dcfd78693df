"""SDXL, SD3 and Flux traced like SD 1.x: tiny random-weight pipelines of each family, built from configs.

Each final image must equal diffusers' own pipeline's for the same seed; x0 at the last step must be the final
latents; attention must be the softmax the model computed; the CLI, the layer table and the app must take them.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
import torch

import sdviz
from sdviz import Settings
from sdviz.sampling import schedulers
from sdviz.sampling.attention import AttentionCapture, model_layer_table
from sdviz.sampling.models import GENERAL_EXAMPLES
from tests.families import BUILDERS
from tests.helpers import sdviz_main
from ui.walk import WALK_PANELS

SIZE = 32  # pixels: 16 x 16 latents with the tiny VAEs (factor 2)
PROMPT = "a cat on the left and a dog on the right"


@pytest.fixture(scope="session")
def family_models(family_dirs):
    return {name: sdviz.load_model(str(folder)) for name, folder in family_dirs.items()}


@functools.cache
def reference_pipeline(pipeline_class, folder):
    """The family's own diffusers pipeline, loaded from the same folder (once per family)."""
    pipe = pipeline_class.from_pretrained(str(folder), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_image(model, folder, scheduler, **call):
    """The family's own pipeline's image, with `scheduler` (a new one: a scheduler keeps per-run state)."""
    pipe = reference_pipeline(type(model.pipe), folder)
    pipe.scheduler = schedulers.create(scheduler, dict(pipe.scheduler.config))
    generator = torch.Generator("cpu").manual_seed(call.pop("seed"))
    image = pipe(PROMPT, height=SIZE, width=SIZE, generator=generator, output_type="np", **call).images[0]
    return (image * 255).round().astype(np.uint8)


CASES = [  # (family, sdviz settings, the pipeline's arguments for the same run)
    ("sdxl", dict(guidance=5.0, negative_prompt="blurry"), dict(guidance_scale=5.0, negative_prompt="blurry")),
    ("sdxl", dict(guidance=1.0, scheduler="dpmpp_2m"), dict(guidance_scale=1.0)),
    ("sd3", dict(guidance=5.0, negative_prompt="blurry"), dict(guidance_scale=5.0, negative_prompt="blurry")),
    ("sd3", dict(guidance=4.0, scheduler="flow_heun"), dict(guidance_scale=4.0)),
    ("flux", dict(guidance=3.5), dict(guidance_scale=3.5)),
    ("flux", dict(guidance=3.5, true_cfg=4.0, negative_prompt="blurry"),
     dict(guidance_scale=3.5, true_cfg_scale=4.0, negative_prompt="blurry")),
]


@pytest.mark.parametrize("family, settings, call", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_final_image_equals_the_familys_pipeline(family_models, family_dirs, family, settings, call):
    model = family_models[family]
    traj = sdviz.generate(model, Settings(prompt=PROMPT, steps=4, seed=7, width=SIZE, height=SIZE, **settings))
    expected = reference_image(model, family_dirs[family], traj.settings.scheduler, seed=7,
                               num_inference_steps=4, **call)
    assert traj.complete and np.array_equal(traj.final_image, expected)
    # real classifier-free guidance (an unconditional pass) exists exactly where the family runs one
    has_uncond = traj.steps[0].noise_uncond is not None
    assert has_uncond == (family != "flux" and settings["guidance"] > 1 or settings.get("true_cfg", 1) > 1)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_x0_at_the_last_step_is_the_final_latents_in_the_vaes_layout(family_models, family):
    model = family_models[family]
    traj = sdviz.generate(model, Settings(prompt=PROMPT, steps=5, seed=1, width=SIZE, height=SIZE))
    facts = model.facts
    latent_shape = tuple(facts.latent_shape(SIZE, SIZE))
    last = traj.steps[-1]
    # Flux's packed 2 x 2 patches are unpacked: every record is (C, h, w), as the VAE's latents are
    assert last.x_next.shape == last.x0_pred.shape == last.noise_pred.shape == traj.x_start.shape == latent_shape
    np.testing.assert_allclose(last.x0_pred, last.x_next, atol=1e-5)
    assert traj.steps[-1].x0_image.shape == (SIZE, SIZE, 3)
    # x0 is the prediction that moved the sample: x_t - sigma v for flow matching
    if facts.prediction_type == "flow":
        first = traj.steps[0]
        np.testing.assert_allclose(first.x0_pred, first.x_t - first.sigma * first.noise_pred, atol=1e-5)
        assert first.sigma <= 1.0 and traj.steps[-1].sigma > 0


def test_each_family_uses_its_own_scheduler_unless_one_is_named(family_models):
    own = {"sdxl": "euler", "sd3": "flow_euler", "flux": "flow_euler", "lcm": "lcm"}
    for family, model in family_models.items():
        assert model.facts.scheduler == own[family]
        assert Settings().resolved(model.facts).scheduler == own[family]
    with pytest.raises(ValueError, match=r"scheduler 'ddim' does not fit this model \(sd3\).*allowed: flow_euler"):
        Settings(scheduler="ddim").resolved(family_models["sd3"].facts)
    with pytest.raises(ValueError, match=r"scheduler 'flow_euler' does not fit this model \(sdxl\).*allowed: ddim"):
        Settings(scheduler="flow_euler").resolved(family_models["sdxl"].facts)
    with pytest.raises(ValueError, match="true cfg 3.0 applies to Flux only"):
        Settings(true_cfg=3.0).resolved(family_models["sdxl"].facts)
    with pytest.raises(ValueError, match="width 30 is not a multiple of the model's VAE factor times its patch size 4"):
        Settings(width=30).resolved(family_models["flux"].facts)


def test_facts_are_read_from_each_model(family_models):
    sdxl, sd3, flux = (family_models[name].facts for name in ("sdxl", "sd3", "flux"))
    assert (sdxl.family, sdxl.denoiser, sdxl.prediction_type) == ("sdxl", "unet", "epsilon")
    assert sdxl.text_width == family_models["sdxl"].unet.config.cross_attention_dim  # both CLIPs side by side
    assert {"text_encoder", "text_encoder_2", "unet", "vae"} <= set(sdxl.parameters)
    assert (sd3.family, sd3.denoiser, sd3.prediction_type, sd3.shift_factor) == ("sd3", "transformer", "flow", 0.0609)
    assert {"text_encoder", "text_encoder_2", "text_encoder_3", "transformer"} <= set(sd3.parameters)
    assert (flux.family, flux.tokens, flux.shift_factor) == ("flux", 512, 0.1159)  # T5's window, as Flux encodes
    assert flux.size_multiple == 2 * flux.vae_factor


def test_what_is_not_traced_for_the_new_families_is_refused(family_models):
    from PIL import Image

    image = Image.new("RGB", (SIZE, SIZE), (200, 40, 40))
    for family, model in family_models.items():
        label = sdviz.sampling.families.FAMILIES[family].label
        with pytest.raises(ValueError, match=f"init image: an edit is not traced for {label} models yet"):
            sdviz.sampling.sampler.Run(model, Settings(prompt="a cat", width=SIZE, height=SIZE,
                                                       source_prompt="a red square"), init_image=image)
        other = "ddim" if family in ("sd3", "flux") else "flow_euler"
        refused = (f"an inversion is not traced for {label} models yet" if family == "lcm"  # not trained to run back
                   else f"scheduler '{other}' cannot invert a {label} model; allowed: ")
        with pytest.raises(ValueError, match=refused):
            sdviz.sampling.sampler.Run(model, Settings(prompt="a cat", width=SIZE, height=SIZE, invert=True,
                                                       scheduler=other), init_image=image)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_flow_model_inverts_by_its_euler_steps_reversed(family_models, family):
    """From the image's latents (encoded as the img2img pipeline encodes them, not noised) up the forward run's
    own sigmas to noise, each step x + (sigma_next - sigma) v; flow Euler forward from that noise comes back to
    the latents with the error of a first-order method, which shrinks as the steps grow (about 1/steps)."""
    from PIL import Image

    model = family_models[family]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    errors = []
    for steps in (4, 16):
        result = sdviz.invert(model, Settings(prompt=PROMPT, steps=steps, guidance=1.0, width=SIZE, height=SIZE), image)
        inversion, reconstruction = result.inversion, result.reconstruction
        assert (inversion.settings.scheduler, reconstruction.settings.scheduler) == ("flow_euler", "flow_euler")
        sigmas = [record.sigma for record in inversion.steps]
        forward = [record.sigma for record in reconstruction.steps]
        assert sigmas[0] == 0 and sigmas == sorted(sigmas) and sigmas[1:] == forward[::-1][:-1]  # the run's, reversed
        for record in inversion.steps:  # each step's x0 is x_t - sigma v, at the sigma it started from
            np.testing.assert_allclose(record.x0_pred, record.x_t - record.sigma * record.noise_pred, atol=1e-5)
        assert inversion.steps[0].x_t.shape == tuple(model.facts.latent_shape(SIZE, SIZE))  # Flux's unpacked
        errors.append(float(np.abs(reconstruction.steps[-1].x_next - inversion.x_start).mean()))
    assert errors[1] < errors[0] / 3, errors


def test_sdxl_inverts_as_diffedit_does_with_its_own_conditioning(family_models):
    """DDIMInverseScheduler stepped from the image's latents (StableDiffusionXLImg2ImgPipeline's, not noised) with
    SDXL's UNet and conditioning, as StableDiffusionDiffEditPipeline.invert steps SD's (no SDXL inversion pipeline
    exists to compare with: the reference is that loop, on diffusers' parts); the reconstruction is DDIM forward."""
    import diffusers
    from PIL import Image

    model = family_models["sdxl"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    result = sdviz.invert(model, Settings(prompt=PROMPT, steps=5, guidance=3.0, seed=4, width=SIZE, height=SIZE), image)
    assert (result.inversion.settings.scheduler, result.reconstruction.settings.scheduler) == ("ddim", "ddim")

    pipe = model.pipeline(schedulers.create("ddim", model.scheduler_config), diffusers.StableDiffusionXLImg2ImgPipeline)
    inverse = diffusers.DDIMInverseScheduler.from_config(model.scheduler_config)
    inverse.set_timesteps(5)
    with torch.no_grad():
        latents = pipe.prepare_latents(pipe.image_processor.preprocess(image), None, 1, 1, torch.float32, "cpu",
                                       torch.Generator().manual_seed(4), add_noise=False)
        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(PROMPT, device="cpu", negative_prompt=None)
        time_ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]] * 2, dtype=torch.float32)
        added = {"text_embeds": torch.cat([uncond_pooled, pooled]), "time_ids": time_ids}
        expected = []
        for t in inverse.timesteps:
            output = pipe.unet(torch.cat([latents] * 2), t, torch.cat([uncond, cond]), added_cond_kwargs=added).sample
            uncond_out, cond_out = output.chunk(2)
            latents = inverse.step(uncond_out + 3.0 * (cond_out - uncond_out), t, latents).prev_sample
            expected.append(latents[0].numpy())
    np.testing.assert_allclose(np.stack([record.x_next for record in result.inversion.steps]), np.stack(expected),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.reconstruction.x_start, expected[-1])


def spied_attention(model, settings, capture):
    """The query and key tensors each of the denoiser's attention calls really used (after norms and rotary
    embedding), taken from torch's own scaled_dot_product_attention, which the processors call, as
    (B, heads, S, D): a spy, the computation is unchanged."""
    calls, inside = [], []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, *args, **kwargs):
        if inside:
            calls.append((query.detach().clone(), key.detach().clone()))
        return original(query, key, *args, **kwargs)

    hooks = [model.denoiser.register_forward_pre_hook(lambda *_: inside.append(True)),
             model.denoiser.register_forward_hook(lambda *_: inside.clear())]
    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        traj = sdviz.generate(model, settings, capture=capture)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
        for hook in hooks:
            hook.remove()
    return traj, calls


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_joint_attention_maps_are_the_image_query_text_key_block_of_the_models_softmax(family_models, family):
    model = family_models[family]
    settings = Settings(prompt="a cat", steps=1, seed=0, width=SIZE, height=SIZE, guidance=3.0)
    traj, calls = spied_attention(model, settings, AttentionCapture(model, self_attention=True))
    maps = traj.attention
    keep = len(maps.tokens)
    assert maps.kinds[-1] == "end" and maps.kinds.count("word") == 2  # 'a', 'cat'
    image_tokens = (SIZE // model.facts.vae_factor // 2) ** 2  # SD3's 2 x 2 patches, Flux's 2 x 2 packing
    grid = int(image_tokens ** 0.5)
    assert list(maps.cross) == [f"{grid}x{grid}"]
    assert maps.cross[f"{grid}x{grid}"].shape == (1, keep, grid, grid)
    # each layer's softmax recomputed from the real query and key; its image-query x text-key block, summed
    assert len(calls) == len(model.denoiser.attn_processors)
    expected = image_expected = 0
    for query, key in calls:
        query, key = query[-1].float(), key[-1].float()  # the conditional sample: (heads, S, D)
        probs = (query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5).softmax(-1)  # (heads, S, S)
        text = probs.shape[-1] - image_tokens
        if family == "flux":  # the text first
            block, image_block = probs[:, text:, :keep], probs[:, text:, text:]
        else:  # SD3: the image first, then CLIP's 77 slots (the token view's), then T5's
            block = probs[:, :image_tokens, image_tokens : image_tokens + keep]
            image_block = probs[:, :image_tokens, :image_tokens]
        expected = expected + block.mean(0)
        image_expected = image_expected + image_block.mean(0) / len(calls)
    expected = expected.T.reshape(keep, grid, grid)
    captured = maps.cross[f"{grid}x{grid}"][0].astype(np.float32)  # float16 on the CPU: 3 significant digits
    np.testing.assert_allclose(captured, expected.numpy(), rtol=4e-3, atol=1e-6)
    # shares of one softmax per layer: each query's share of the kept text slots is below one per layer
    assert 0 < expected.sum(0).max() < len(calls)
    # the image-query x image-key block, averaged over the layers: what the self-attention probe shows
    probe = maps.self_attn[f"{grid}x{grid}"][0].astype(np.float32)
    np.testing.assert_allclose(probe, image_expected.numpy(), rtol=4e-3, atol=1e-6)


def test_sdxl_attention_sums_over_its_cross_attention_layers(family_models):
    model = family_models["sdxl"]
    traj = sdviz.generate(model, Settings(prompt="a cat", steps=2, seed=0, width=SIZE, height=SIZE, guidance=3.0),
                          capture=AttentionCapture(model))
    maps = traj.attention
    cross_layers = [row for row in model_layer_table(model, SIZE, SIZE) if row["kind"] == "cross"]
    for key, stacked in maps.cross.items():
        layers = sum(1 for row in cross_layers if f"{row['grid'][0]}x{row['grid'][1]}" == key)
        assert stacked.shape[:2] == (2, len(maps.tokens))
        # each layer's row over the kept slots is at most 1 (the padding takes the rest), summed over its layers
        assert 0 < stacked.astype(np.float32).sum(1).max() <= layers + 1e-2


@pytest.mark.parametrize("family, kinds", [("sdxl", {"self", "cross"}), ("sd3", {"joint"}),
                                           ("flux", {"joint", "single"})])
def test_layer_table_reads_each_models_layers(family_models, family, kinds):
    model = family_models[family]
    table = model_layer_table(model, SIZE, SIZE)
    assert {row["kind"] for row in table} == kinds
    denoiser = model.denoiser
    assert len(table) == len(denoiser.attn_processors)
    for row in table:
        heads = denoiser.get_submodule(row["name"]).heads
        assert row["query_shape"][0] == row["probs_shape"][0] and row["query_shape"][0] % heads == 0


@pytest.mark.parametrize("family", list(BUILDERS))
def test_cli_renders_each_family(family_dirs, family, tmp_path):
    out = tmp_path / family
    result = sdviz_main("render", "--model", str(family_dirs[family]), "--prompt", PROMPT, "--steps", "2",
                        "--width", str(SIZE), "--height", str(SIZE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "final.png").is_file() and (out / "trajectory.json").is_file()
    layers = sdviz_main("layers", "--model", str(family_dirs[family]), "--width", str(SIZE), "--height", str(SIZE))
    assert layers.returncode == 0, layers.stderr
    bad = sdviz_main("render", "--model", str(family_dirs[family]), "--prompt", "x", "--scheduler",
                     "ddim" if family in ("sd3", "flux") else "flow_euler", "--out", str(tmp_path / "bad"))
    assert bad.returncode != 0 and "does not fit this model" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("family", ["sdxl", "flux", "lcm"])
def test_an_unchanged_fork_of_each_family_is_its_parent(family_models, family):
    """A fork replays the parent's recorded outputs (Flux's packed back into 2 x 2 patches) bit for bit."""
    from sdviz.sampling.fork import Fork

    model = family_models[family]
    settings = Settings(prompt=PROMPT, steps=4, seed=2, width=SIZE, height=SIZE, guidance=3.0)
    parent = sdviz.generate(model, settings)
    fork = sdviz.generate(model, settings, fork=Fork(parent, 2))
    for mine, theirs in zip(fork.steps, parent.steps):
        np.testing.assert_array_equal(mine.x_next, theirs.x_next)
    np.testing.assert_array_equal(fork.final_image, parent.final_image)


def test_forward_process_and_schedule_of_a_flow_model(family_dirs, tmp_path):
    """Flow matching's levels: sigma from 1 down, x_t = (1 - sigma) x0 + sigma eps, as the family sets them."""
    import json

    folder = str(family_dirs["flux"])
    rows = json.loads(sdviz_main("schedule", "--model", folder, "--steps", "4", "--json").stdout)
    sigmas = [row["sigma"] for row in rows]
    assert sigmas[0] == pytest.approx(1.0) and all(a > b > 0 for a, b in zip(sigmas, sigmas[1:]))
    assert all(row["alpha_bar"] == pytest.approx((1 - s) ** 2 / ((1 - s) ** 2 + s * s)) for row, s in zip(rows, sigmas))
    model = sdviz.load_model(folder)
    traj = sdviz.generate(model, Settings(prompt=PROMPT, steps=4, seed=0, width=SIZE, height=SIZE))
    image = traj.final_image
    process = sdviz.analysis.forward.forward_process(model, image, steps=4, width=SIZE, height=SIZE)
    sigma = process.sigmas[1]
    np.testing.assert_allclose(process.x_t[1], (1 - sigma) * process.x0 + sigma * process.noise, atol=1e-5)
    # the run's own noise levels are the table's (its schedule shifts with the image's size: 64 positions here)
    table = sdviz.analysis.schedule.schedule_table("flow_euler", 4, model.scheduler_config, "flux", 64)
    assert [step.sigma for step in traj.steps] == pytest.approx([row["sigma"] for row in table])


def test_the_app_offers_each_family_over_the_api(app_url, family_dirs, family_models):
    """The shared app server offers the tiny SDXL, SD3 and Flux folders (SDVIZ_MODELS, see conftest)."""
    import json
    import zipfile

    import gradio_client
    from PIL import Image

    api = gradio_client.Client(app_url, verbose=False)
    for family, folder in family_dirs.items():
        name = folder.name  # the menu's name: the folder's, never its path
        scheduler = family_models[family].facts.scheduler
        extra = dict(negative_prompt="blurry", true_cfg=3.0) if family == "flux" else {}  # Flux's real guidance
        final, files, _ = api.predict(prompt=PROMPT, model=name, scheduler=scheduler, steps=2, width=SIZE, height=SIZE,
                                   api_name="/generate", **extra)
        local = sdviz.generate(family_models[family], Settings(prompt=PROMPT, scheduler=scheduler, steps=2,
                                                               width=SIZE, height=SIZE, **extra))
        # every family here ran an unconditional pass, but LCM's, whose guidance is an input of its UNet
        assert (local.steps[0].noise_uncond is not None) == (family != "lcm")
        np.testing.assert_array_equal(np.asarray(Image.open(final)), local.final_image)
        archive = next(f for f in files if f.endswith("trajectory.zip"))
        with zipfile.ZipFile(archive) as bundle:
            saved = json.loads(bundle.read(next(n for n in bundle.namelist() if n.endswith("trajectory.json"))))
        assert saved["facts"]["family"] == family
        with pytest.raises(Exception) as error:  # a scheduler of another family, refused by name
            api.predict(prompt=PROMPT, model=name, scheduler="ddim" if family in ("sd3", "flux") else "flow_euler",
                        steps=2, width=SIZE, height=SIZE, api_name="/generate")
        assert "does not fit this model" in str(error.value)


DENOISER_CLASS = {"sdxl": "UNet2DConditionModel", "sd3": "SD3Transformer2DModel", "flux": "FluxTransformer2DModel",
                  "lcm": "UNet2DConditionModel"}


def test_the_pages_panels_draw_each_family(family_dirs):
    """Choosing a model offers its family's schedulers; every explaining panel draws a run of it (the
    step views, the forward process, the latent space, the How it works walk with its diagram and tokens)."""
    import json

    from sdviz.sampling.cache import ModelCache
    from ui.config import AppConfig
    from ui.files import FileStore
    from ui.session import Session
    from ui.tabs.explain import ExplainHandlers
    from ui.tabs.explore import ExploreHandlers
    from ui.tabs.run import RunHandlers

    models = tuple(str(folder) for folder in family_dirs.values())
    files = FileStore(600, 2**30)
    session = Session(AppConfig(default_model=models[0], models=models), ModelCache(None, most=3), files)
    try:
        for family, folder in family_dirs.items():
            width, height, update, true_cfg, examples = RunHandlers(session).model_changed(folder.name, "ddim")
            assert examples["choices"] == list(GENERAL_EXAMPLES)  # no card: general ones
            offered = [name for _, name in update["choices"]]
            assert offered == schedulers.for_family(family)
            unet = family in ("sdxl", "lcm")
            assert update["value"] == ("ddim" if unet else session.model(folder.name).facts.scheduler)
            assert true_cfg["visible"] == (family == "flux") and (family == "flux" or true_cfg["value"] == 1.0)
            run = session.build_run(folder.name, True, prompt=PROMPT, steps=3, guidance=4.0, width=SIZE, height=SIZE)
            for _ in run:
                pass
            traj = run.trajectory
            explainer, explorer = ExplainHandlers(session), ExploreHandlers(session)
            views = explorer.step_views(traj, 2)
            assert views[2] is not None and "x0" in views[4]  # the guided x0 and the formula's words
            assert ("input of the transformer" in views[4]) == (family == "flux")  # Flux's guidance: no halves
            panels = dict(zip(WALK_PANELS, explainer.walk(traj)))
            components, tokens = panels["components"], panels["tokens"]
            transformer = not unet
            texts = " ".join(panels[f"text-{k}"] for k in range(1, 8))  # the walk's words are the model's
            assert ("transformer" in texts, "UNet" in texts) == (transformer, not transformer)
            assert (("velocity v = ε − x0" in panels["text-4"], "joint attention" in panels["text-6"])
                    == (transformer,) * 2)
            assert ("x_t = (1 − σ)·x0 + σ·ε" in panels["forward-note"]) == transformer
            denoiser = DENOISER_CLASS[family]
            assert denoiser in components and all(e["class"] in components for e in traj.facts.encoders)
            assert ("Transformer + scheduler" in components) == transformer
            others = traj.tokens.get("others", [])
            assert len(others) == len(traj.facts.encoders) - 1 and all(o["encoder"] in tokens for o in others)
            assert explainer.forward(traj)[0] is not None and explainer.latent(traj)[0] is not None
            predicted = explorer.show_step(traj, 2, None, "all", "this step")[2]  # the explorer's third picture
            assert predicted["label"] == ("predicted noise ε" if unet else "predicted velocity v = ε − x0")
            page = json.loads(sdviz.drawing.page.run_page(traj).split('id="sdviz-data">')[1].split("</script>")[0])
            assert page["prediction"] == traj.prediction_label
            assert page["denoiser"] == ("UNet" if unet else "Transformer") + " + scheduler"
    finally:
        files.remove()


def test_previews_know_each_familys_published_vae(family_models):
    """SD3's and Flux's VAEs (16 channels, their scaling and shift) get ComfyUI's latent-to-RGB factors and
    madebyollin's tiny decoders; the tiny models here, whose VAEs are their own, get a fitted map."""

    from sdviz.sampling.previews import FLUX_LATENT_RGB, SD3_LATENT_RGB, fit_latent_rgb, taesd_source

    facts = family_models["sd3"].facts
    for (scaling, shift), factors, decoder in (((1.5305, 0.0609), SD3_LATENT_RGB, "madebyollin/taesd3"),
                                               ((0.3611, 0.1159), FLUX_LATENT_RGB, "madebyollin/taef1")):
        published = replace(facts, latent_channels=16, scaling_factor=scaling, shift_factor=shift)
        np.testing.assert_array_equal(fit_latent_rgb(None, published).numpy(), np.array(factors, np.float32))
        assert taesd_source(published) == decoder
    assert family_models["sd3"].latent_rgb.shape == (facts.latent_channels + 1, 3)  # fitted


def test_taesd_preview_decodes_with_the_shift(family_models, tmp_path, monkeypatch):
    """A tiny decoder is used as the family's pipeline would use it as its VAE: latents / scaling + shift."""
    from diffusers import AutoencoderTiny

    model = family_models["sd3"]
    tiny = AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                           num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4,
                           upsampling_scaling_factor=2, scaling_factor=1.5305, shift_factor=0.0609)
    tiny.save_pretrained(tmp_path / "taesd3")
    monkeypatch.setenv("SDVIZ_TAESD", str(tmp_path / "taesd3"))
    traj = sdviz.generate(model, Settings(prompt=PROMPT, steps=2, width=SIZE, height=SIZE, preview="taesd"))
    with torch.no_grad():
        decoded = tiny.decode(torch.from_numpy(traj.steps[0].x0_pred)[None] / 1.5305 + 0.0609).sample
    expected = ((decoded[0].permute(1, 2, 0) / 2 + 0.5).clamp(0, 1) * 255).round().numpy()
    np.testing.assert_allclose(traj.steps[0].x0_image, expected, atol=1)


def test_flux_real_guidance_keeps_no_negative_maps_it_did_not_observe(family_models):
    """Flux runs the negative prompt as a call of its own, which the capture does not observe: the maps are the
    prompt's, and there are no negative-prompt maps (SD3 batches both halves: it has them)."""
    settings = Settings(prompt="a cat", negative_prompt="a dog", steps=1, width=SIZE, height=SIZE, true_cfg=3.0)
    flux = sdviz.generate(family_models["flux"], settings, capture=AttentionCapture(family_models["flux"]))
    assert flux.steps[0].noise_uncond is not None and flux.attention.negative is None
    sd3 = sdviz.generate(family_models["sd3"], Settings(prompt="a cat", negative_prompt="a dog", steps=1,
                                                        width=SIZE, height=SIZE, guidance=3.0),
                         capture=AttentionCapture(family_models["sd3"]))
    assert sd3.attention.negative is not None and sd3.attention.negative.tokens[2] == "dog</w>"


@pytest.mark.parametrize("family, strength", [("sd3", 0.6), ("sd3", 1.0), ("flux", 0.6), ("sdxl", 0.6)])
def test_image_to_image_equals_its_pipeline(family_models, family_dirs, family, strength):
    """StableDiffusion3Img2ImgPipeline's, FluxImg2ImgPipeline's and StableDiffusionXLImg2ImgPipeline's runs:
    the image encoded (with the VAE's shift), noised to the first kept timestep (flow models: by the
    scheduler's `scale_noise`; Flux: then packed; SDXL: with its img2img size ids), then the same loop as
    text to image."""
    import diffusers
    from PIL import Image

    model = family_models[family]
    flow = sdviz.sampling.families.FAMILIES[family].flow
    scheduler = "flow_euler" if flow else "euler"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    traj = sdviz.generate(model, Settings(prompt=PROMPT, steps=6, strength=strength, guidance=4.0, seed=3,
                                          scheduler=scheduler, width=SIZE, height=SIZE), init_image=image)
    pipeline_class = getattr(diffusers, sdviz.sampling.families.FAMILIES[family].pipelines[1])
    pipe = reference_pipeline(pipeline_class, family_dirs[family])
    pipe.scheduler = schedulers.create(scheduler, dict(pipe.scheduler.config))
    expected = pipe(PROMPT, image=image, strength=strength, num_inference_steps=6, guidance_scale=4.0, height=SIZE,
                    width=SIZE, generator=torch.Generator("cpu").manual_seed(3), output_type="np").images[0]
    kept = 6 - int(6 - 6 * strength) if flow else int(6 * strength)  # get_timesteps' count
    assert len(traj.steps) == kept and traj.settings.img2img
    np.testing.assert_array_equal(traj.final_image, (expected * 255).round().astype(np.uint8))
    assert traj.steps[0].x_t.shape == tuple(model.facts.latent_shape(SIZE, SIZE))  # Flux's unpacked too
    # the explaining panels place the run where it started in its schedule
    table = sdviz.analysis.schedule.schedule_table(scheduler, 6, model.scheduler_config, family,
                                          model.facts.image_tokens(SIZE, SIZE))
    start = sdviz.analysis.forward.img2img_start(6, strength, 1, flow=flow)
    assert table[start]["timestep"] == pytest.approx(traj.steps[0].timestep)


def test_sdxl_image_to_image_leaves_the_shared_vae_in_float32(family_dirs):
    """StableDiffusionXLImg2ImgPipeline casts a `force_upcast` VAE to float32 and back to the run's dtype around
    the encode; on the model's one VAE that would reach every other run. A half-precision model (bf16 here: the
    CPU computes it) runs image to image and its VAE stays as the loader left it."""
    from PIL import Image

    model = sdviz.load_model(str(family_dirs["sdxl"]), dtype="bfloat16")
    assert model.pipe.vae.dtype == torch.float32 and model.pipe.unet.dtype == torch.bfloat16
    image = Image.new("RGB", (SIZE, SIZE), (200, 40, 40))
    traj = sdviz.generate(model, Settings(prompt=PROMPT, steps=2, strength=1.0, width=SIZE, height=SIZE),
                          init_image=image)
    assert len(traj.steps) == 2 and np.isfinite(traj.steps[-1].x0_pred).all()
    assert model.pipe.vae.dtype == torch.float32


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_the_path_views_read_every_familys_latents_and_attention(family_models, family):
    """The map, a region's words and where two runs part, on each family's own latents and attention maps."""
    from sdviz.analysis.path import parting, region_words, trajectory_map

    model = family_models[family]
    settings = Settings(prompt="a cat on the left and a dog", steps=3, width=SIZE, height=SIZE)
    traj = sdviz.generate(model, settings, capture=AttentionCapture(model))
    other = sdviz.generate(model, replace(settings, seed=1))
    mapped = trajectory_map([traj, other])
    assert [len(points) for points in mapped.points] == [4, 4] and [len(p) for p in mapped.x0_points] == [3, 3]
    height, width = traj.attention.image_hw
    left = region_words(traj, 2, (0, 0, width // 2, height), "run")
    right = {item["index"]: item["share"] for item in region_words(traj, 2, (width // 2, 0, width, height), "run")}
    assert {"cat", "dog"} <= {item["word"] for item in left}
    for item in left:  # a word's share inside a box and outside it sum to 1
        assert item["share"] + right[item["index"]] == pytest.approx(1.0, abs=1e-6)
    result = parting(traj, other, (traj.decoder(), other.decoder()))
    assert len(result["x0"]) == 3 and result["x0"][0] > 0  # another seed: apart from the first step
