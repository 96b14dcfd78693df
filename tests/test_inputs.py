"""Settings checks and img2img inputs: bad values refused by name, odd images converted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz.sampling.checks import validate
from sdviz.sampling.images import load_image, prepare_init_image
from sdviz.sampling.models import EMBEDDED_MODEL
from sdviz.sampling.settings import Settings


@pytest.mark.parametrize("field,value,message", [
    ("steps", 2.5, "steps 2.5 is not a whole number"),
    ("steps", True, "is not a whole number"),
    ("guidance", float("inf"), "guidance inf is not finite"),
    ("guidance", "lots", "guidance 'lots' is not a number"),
    ("seed", 2**64, "is out of range"),
    ("eta", 2.0, "eta 2.0 is out of range; allowed: [0, 1]"),
])
def test_validate_names_the_value_and_the_range(field, value, message):
    with pytest.raises(ValueError, match=None) as error:
        validate(Settings(**{field: value}))
    assert message in str(error.value)


def test_scheduler_class_names_are_accepted():
    assert validate(Settings(scheduler="DPMSolverMultistepScheduler")).scheduler == "DPMSolverMultistepScheduler"
    assert validate(Settings(scheduler="EulerAncestralDiscreteScheduler")).scheduler == "euler_a"
    assert validate(Settings(scheduler=" UniPC ")).scheduler == "unipc"


def test_size_defaults_to_the_models_native_size(embedded):
    resolved = Settings().resolved(embedded.facts)
    assert (resolved.width, resolved.height) == (embedded.facts.native_width, embedded.facts.native_height)
    assert resolved.width == embedded.unet.config.sample_size * embedded.facts.vae_factor


def test_sizes_past_four_to_one_are_refused_before_any_model_work(embedded, monkeypatch):
    """A thin size (2048 x 4 passes a pixel limit) would have the exports enlarge its frames by their short
    side: refused by its aspect ratio, with the limit named; 4:1 itself is a size like any other."""
    calls = []
    monkeypatch.setattr(embedded.unet, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(sdviz.InputError, match=r"size 2048 x 4 has an aspect ratio of 512:1; allowed: at most 4:1"):
        sdviz.Run(embedded, Settings(width=2048, height=4))
    with pytest.raises(sdviz.InputError, match=r"size 16 x 80 has an aspect ratio of 5:1"):
        Settings(width=16, height=80).resolved(embedded.facts)
    assert calls == []
    assert Settings(width=64, height=16).resolved(embedded.facts).width == 64


def test_bad_input_is_refused_before_any_model_work(embedded, monkeypatch):
    calls = []
    monkeypatch.setattr(embedded.unet, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="steps 0"):
        sdviz.Run(embedded, Settings(steps=0))
    with pytest.raises(ValueError, match="width 33"):
        sdviz.Run(embedded, Settings(width=33))
    assert calls == []


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "I;16", "I", "F", "1"])
def test_odd_but_valid_images_are_converted(tmp_path, mode):
    base = Image.new("RGB", (20, 12), (255, 0, 0))
    if mode == "I;16":
        image = Image.fromarray(np.full((12, 20), 40000, np.uint16))
    elif mode in ("I", "F"):
        image = Image.fromarray(np.full((12, 20), 40000 if mode == "I" else 0.5,
                                        np.int32 if mode == "I" else np.float32))
    else:
        image = base.convert(mode)
    path = tmp_path / f"in.{'tiff' if mode in ('I;16', 'I', 'F', 'CMYK') else 'png'}"
    image.save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (20, 12)
    pixel = np.asarray(rgb)[0, 0]
    if mode == "I;16":
        assert 150 < pixel[0] < 160  # 40000 / 65535 of white, not clipped to 255
    if mode == "RGBA":
        assert tuple(pixel) == (255, 0, 0)


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert tuple(np.asarray(load_image(image))[0, 0]) == (255, 255, 255)


def test_arrays_are_accepted_and_resized():
    array16 = np.full((10, 10, 3), 65535, np.uint16)
    assert np.asarray(load_image(array16)).min() == 255
    resized = prepare_init_image(np.zeros((10, 30), np.uint8), 64, 32)
    assert resized.size == (64, 32)
    with pytest.raises(ValueError, match=r"shape \(2, 2, 7\)"):
        load_image(np.zeros((2, 2, 7), np.uint8))


def test_limits_scale_with_the_model_and_name_what_sets_them(embedded):
    from sdviz.sampling.limits import Limits

    facts = embedded.facts
    limits = Limits.from_env({"SDVIZ_MAX_PIXELS": "2", "SDVIZ_MAX_STEPS": "50"})
    assert limits.max_pixels(facts) == 2 * facts.native_width * facts.native_height
    fits = sdviz.Settings(width=facts.native_width * 2, height=facts.native_height, steps=50).resolved(facts)
    limits.check(fits, facts)
    too_big = sdviz.Settings(width=facts.native_width * 2, height=facts.native_height * 2).resolved(facts)
    with pytest.raises(ValueError, match=r"over this server's limit; allowed: up to \d+ pixels, "
                                         r"2 x the model's native .*SDVIZ_MAX_PIXELS"):
        limits.check(too_big, facts)
    with pytest.raises(ValueError, match=r"steps 51 is over this server's limit; allowed: 1\.\.50 \(SDVIZ_MAX_STEPS\)"):
        limits.check(sdviz.Settings(steps=51).resolved(facts), facts)
    for bad in ("0", "-1", "abc", "inf", "nan"):
        with pytest.raises(ValueError, match=f"SDVIZ_MAX_RUN_SECONDS={bad!r} is not a positive number"):
            Limits.from_env({"SDVIZ_MAX_RUN_SECONDS": bad})
    with pytest.raises(ValueError, match="SDVIZ_MAX_STEPS='2.5' is not a positive whole number"):
        Limits.from_env({"SDVIZ_MAX_STEPS": "2.5"})
    with pytest.raises(ValueError, match="SDVIZ_MAX_COMPARE_STEPS='9.5' is not a positive whole number"):
        Limits.from_env({"SDVIZ_MAX_COMPARE_STEPS": "9.5"})
    few = Limits.from_env({"SDVIZ_MAX_COMPARE_STEPS": "60"})
    few.check_comparison([20, 20, 20])
    with pytest.raises(ValueError, match=r"comparison of 2 variants with 50 \+ 11 = 61 steps is over this server's "
                                         r"limit; allowed: up to 60 steps in all \(SDVIZ_MAX_COMPARE_STEPS\)"):
        few.check_comparison([50, 11])


def test_a_run_past_its_time_limit_stops_after_the_step_and_says_so(embedded):
    timed = sdviz.Run(embedded, sdviz.Settings(prompt="a red circle", steps=50), time_limit=0.3)
    steps = list(timed)
    assert 1 <= len(steps) < 50 and not timed.trajectory.complete
    assert f"stopped after step {len(steps)} of 50: the run-time limit is 0.3 s" in timed.trajectory.warnings[-1]


def test_the_model_cache_keeps_at_most_its_size_and_the_default_always(tmp_path):
    from sdviz.sampling.cache import ModelCache
    from tests.conftest import build_tiny_pipeline

    first, second = (str(build_tiny_pipeline(tmp_path / name)) for name in ("first", "second"))
    cache = ModelCache(most=2, pinned=str(EMBEDDED_MODEL))
    cache.get(str(EMBEDDED_MODEL))
    cache.get(first)
    assert cache.loaded() == [str(EMBEDDED_MODEL), first]
    cache.get(second)  # evicts the least recently used model that is not the default
    assert cache.loaded() == [str(EMBEDDED_MODEL), second]
    assert cache.get(second) is cache.get(second)


def test_the_page_hands_each_widgets_value_to_the_handler_under_its_name():
    """The page's events pass values by name (ui.form), not by their place in a list: the handler gets each
    widget's value under its name, whatever the order; a name the handler does not take stops the page
    from being built."""
    gr = pytest.importorskip("gradio")
    from ui.form import Form

    with gr.Blocks():
        prompt, steps, negative = gr.Textbox(), gr.Number(), gr.Textbox()
    form = Form(prompt=prompt, steps=steps)

    async def handler(stop_signal=None, **run):
        yield run

    async def first(bound, *values):
        return await bound["fn"](*values).__anext__()

    import asyncio

    bound = form.bind(handler, "steps", "prompt", negative_prompt=negative)
    assert bound["inputs"] == [steps, prompt, negative]
    assert bound["fn"].names == ("steps", "prompt", "negative_prompt")
    assert asyncio.run(first(bound, 3, "a cat", "blurry")) == {"steps": 3, "prompt": "a cat",
                                                               "negative_prompt": "blurry"}
    with pytest.raises(TypeError, match="takes no stpes"):
        form.bind(handler, "prompt", stpes=steps)

    async def streamed(prompt, steps):
        yield {"prompt": prompt, "steps": steps}

    assert asyncio.run(first(form.bind(streamed, "steps", "prompt"), 4, "a dog")) == {"prompt": "a dog", "steps": 4}
    with pytest.raises(TypeError, match="is not an async generator"):
        form.bind(lambda prompt: prompt, "prompt")
