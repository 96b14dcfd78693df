"""The app over HTTP with gradio_client, a real API client: defaults, errors, concurrent users."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sdviz

gradio_client = pytest.importorskip("gradio_client")


def client(url):
    return gradio_client.Client(url, verbose=False)


def test_generate_with_defaults_returns_the_image_and_the_trajectory_files(app_url, default):
    final, files, _ = client(app_url).predict(prompt="a red circle", api_name="/generate")
    image = np.asarray(Image.open(final))
    assert image.shape == (default.facts.native_height, default.facts.native_width, 3)
    names = sorted(Path(f).name for f in files)
    assert names == ["filmstrip.png", "run.html", "trajectory.gif", "trajectory.mp4", "trajectory.zip"]
    local = sdviz.generate(default, sdviz.Settings(prompt="a red circle"))  # the same defaults, run here
    np.testing.assert_array_equal(image, local.final_image)
    page = Path(next(f for f in files if f.endswith("run.html"))).read_text()
    data = json.loads(page.split('id="sdviz-data">')[1].split("</script>")[0])
    assert data["prompt"] == "a red circle" and len(data["steps"]) == len(local.steps)  # the page replays this run


def test_bad_input_returns_an_error_and_the_server_keeps_serving(app_url):
    api = client(app_url)
    with pytest.raises(Exception) as error:
        api.predict(prompt="a red circle", width=65, api_name="/generate")
    assert "width 65 is not a multiple of the model's VAE factor" in str(error.value)
    with pytest.raises(Exception) as error:
        api.predict(prompt="a red circle", model="someone/any-weights", api_name="/generate")
    # Custom models are off by default: gradio's choice check (or sdviz's own) names the value.
    message = str(error.value)
    assert "someone/any-weights" in message
    assert "not in the list of choices" in message or "is not offered here" in message
    final, _, _ = api.predict(prompt="a blue square", steps=4, api_name="/generate")
    assert Path(final).is_file()


def test_two_clients_at_once_each_get_their_own_seed(app_url, default):
    def run(seed):
        final, _, _ = client(app_url).predict(prompt="a yellow triangle", seed=seed, steps=12, api_name="/generate")
        return np.asarray(Image.open(final))

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first, second = pool.map(run, [1, 2])
    for seed, image in ((1, first), (2, second)):
        expected = sdviz.generate(default, sdviz.Settings(prompt="a yellow triangle", seed=seed, steps=12)).final_image
        np.testing.assert_array_equal(image, expected)
    assert not np.array_equal(first, second)


def test_compare_over_the_api_is_each_variant_run_alone(app_url, default):
    """/compare: the grid, compare.json and one trajectory per variant; each variant is the run /generate
    (and the core) makes for its settings. Too many variants are refused by name."""
    import json
    import zipfile

    api = client(app_url)
    grid, files, _ = api.predict(prompt="a red circle", steps=4, seed=2, vary="scheduler=ddim,euler_a; guidance=1,5",
                              api_name="/compare")
    summary = json.loads(Path(next(f for f in files if f.endswith("compare.json"))).read_text())
    assert [v["label"] for v in summary["variants"]] == [
        "scheduler=ddim, guidance=1.0", "scheduler=ddim, guidance=5.0",
        "scheduler=euler_a, guidance=1.0", "scheduler=euler_a, guidance=5.0"]
    assert sorted(Path(f).name for f in files if f.endswith(".zip")) == sorted(
        f"{v['folder']}.zip" for v in summary["variants"])
    assert Image.open(grid).width > 4 * default.facts.native_width
    assert sorted(Path(f).name for f in files if not f.endswith(".zip")) == ["compare.gif", "compare.html",
                                                                             "compare.json", "compare.mp4"]
    assert all(isinstance(v["settled_step"], int) for v in summary["variants"])
    third = summary["variants"][2]["settings"]
    zipped = next(f for f in files if Path(f).name == f"{summary['variants'][2]['folder']}.zip")
    with zipfile.ZipFile(zipped) as archive:
        final = np.load(archive.open("frames.npz"))["final_image"]
    local = sdviz.generate(default, sdviz.Settings(prompt="a red circle", steps=4, seed=2,
                                                    scheduler=third["scheduler"], guidance=third["guidance"]))
    np.testing.assert_array_equal(final, local.final_image)
    with pytest.raises(Exception) as error:
        api.predict(prompt="a red circle", vary="steps=2,3,4; eta=0,0.5,1", api_name="/compare")
    assert "vary gives 9 variants (3 x 3); allowed: 2 to 8" in str(error.value)
    with pytest.raises(Exception) as error:
        api.predict(prompt="a red circle", vary="steps=2,5000", api_name="/compare")
    assert "steps 5000" in str(error.value)  # every variant within the host's limits, checked before any runs
    with pytest.raises(Exception) as error:
        api.predict(prompt="a red circle", vary="steps=200,150,100", api_name="/compare")
    assert "= 450 steps is over this server's limit; allowed: up to 400 steps in all" in str(error.value)


def test_edit_and_inversion_over_the_api_equal_the_core(app_url, default, tmp_path):
    """/generate with a source prompt is an edit; /invert returns the reconstruction, the round trip and the
    error; each equals the same work done here. Bad input is refused with the parameter named."""
    from sdviz.workflows.invert import invert
    from training import scenes

    path = tmp_path / "square.png"
    Image.fromarray(scenes.render(scenes.make_scene(("yellow", "square", "large", "left", "purple"),
                                                    np.random.default_rng(0)))[0]).save(path)
    source, target = "a large yellow square on the left on a purple background", "a large red circle on the left"
    api = client(app_url)
    final, _, _ = api.predict(prompt=target, scheduler="ddim", steps=8, guidance=3, seed=2, eta=0.1,
                           init_image=gradio_client.handle_file(str(path)), strength=0.5, source_prompt=source,
                           api_name="/generate")
    settings = sdviz.Settings(prompt=target, scheduler="ddim", steps=8, guidance=3, seed=2, eta=0.1, strength=0.5,
                              source_prompt=source)
    np.testing.assert_array_equal(np.asarray(Image.open(final)),
                                  sdviz.generate(default, settings, init_image=Image.open(path)).final_image)

    reconstruction, files, _ = api.predict(prompt=source, steps=6, guidance=1, seed=1,
                                        image=gradio_client.handle_file(str(path)), api_name="/invert")
    local = invert(default, sdviz.Settings(prompt=source, steps=6, guidance=1, seed=1), Image.open(path))
    np.testing.assert_array_equal(np.asarray(Image.open(reconstruction)), local.reconstruction.final_image)
    assert sorted(Path(f).name for f in files) == ["error.json", "inversion.zip", "reconstruction.zip",
                                                   "round_trip.png"]
    error = json.loads(Path(next(f for f in files if f.endswith("error.json"))).read_text())
    assert error["psnr_db"] == round(local.psnr, 3) and error["vae_psnr_db"] == round(local.vae_psnr, 3)

    with pytest.raises(Exception, match="image is missing"):
        api.predict(prompt=source, image=None, api_name="/invert")
    with pytest.raises(Exception, match="steps 0 is out of range"):
        api.predict(prompt=source, steps=0, image=gradio_client.handle_file(str(path)), api_name="/invert")
    with pytest.raises(Exception, match="an edit starts from an image"):
        api.predict(prompt=target, source_prompt=source, api_name="/generate")
