"""Settings checks and img2img inputs: bad values refused by name, odd images converted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz.images import load_image, prepare_init_image
from sdviz.settings import Settings, validate


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
    assert validate(Settings(scheduler="DPMSolverMultistepScheduler")).scheduler == "dpmpp_2m"
    assert validate(Settings(scheduler="EulerAncestralDiscreteScheduler")).scheduler == "euler_a"
    assert validate(Settings(scheduler=" UniPC ")).scheduler == "unipc"


def test_size_defaults_to_the_models_native_size(embedded):
    resolved = Settings().resolved(embedded.facts)
    assert (resolved.width, resolved.height) == (embedded.facts.native_width, embedded.facts.native_height)
    assert resolved.width == embedded.unet.config.sample_size * embedded.facts.vae_factor


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
        image = Image.fromarray(np.full((12, 20), 40000 if mode == "I" else 0.5, np.int32 if mode == "I" else np.float32))
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
