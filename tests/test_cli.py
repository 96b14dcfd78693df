"""The command line: its files and its errors; run in process (`main`), and as a subprocess where the
interpreter's entry point and exit status are the point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdviz import cli
from sdviz.sampling import schedulers
from tests.helpers import ROOT, sdviz_cli, sdviz_main


def test_render_writes_every_output(tmp_path):
    out = tmp_path / "run"
    result = sdviz_main("render", "--prompt", "a red circle on the left", "--steps", "6", "--seed", "3",
                        "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "step 6/6" in result.stderr  # progress on stderr
    for name in ("final.png", "filmstrip.png", "trajectory.gif", "trajectory.mp4", "trajectory.json", "latents.npz"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "xt").iterdir()) == [f"{i:03d}.png" for i in range(6)] + ["noise.png"]
    assert sorted(p.name for p in (out / "x0").iterdir()) == [f"{i:03d}.png" for i in range(6)]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "final.png")),
                                  np.asarray(Image.open(out / "xt" / "005.png")))
    meta = json.loads((out / "trajectory.json").read_text())
    assert meta["settings"]["steps"] == 6 and len(meta["steps"]) == 6
    assert {"timestep", "sigma", "x_t"} <= set(meta["steps"][0]) and "total" in meta["timings"]
    assert meta["facts"]["vae_factor"] >= 1 and meta["shapes"]["latents"][0] == meta["facts"]["latent_channels"]
    with np.load(out / "latents.npz", allow_pickle=False) as latents:
        for name in ("x_t", "x0_pred", "noise_pred"):
            assert latents[name].shape[0] == 6, name


def test_render_img2img(tmp_path):
    Image.new("RGBA", (40, 30), (200, 30, 30, 128)).save(tmp_path / "in.png")
    out = tmp_path / "run"
    result = sdviz_main("render", "--prompt", "a red square", "--init-image", str(tmp_path / "in.png"),
                       "--strength", "0.5", "--steps", "8", "--scheduler", "EulerDiscreteScheduler", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(list((out / "x0").iterdir())) == 4  # strength 0.5 of 8 steps
    assert "step 4/4 " in result.stderr and "/8 " not in result.stderr  # progress counts the run's own steps


def test_progress_counts_the_schedulers_entries_and_no_path_is_written(tmp_path):
    out = tmp_path / "run"
    result = sdviz_main("render", "--prompt", "a red circle", "--scheduler", "heun", "--steps", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert len(lines) == 5 and lines[-1].startswith("step 5/5 ")  # Heun: 2 x 3 - 1 evaluations
    saved = (out / "trajectory.json").read_text()
    assert json.loads(saved)["settings"]["model"] == "sdviz-objects"  # the model's name, not where it is installed
    assert str(ROOT) not in saved


def test_import_sdviz_is_light():
    import subprocess
    import sys

    code = "import sys, sdviz; sdviz.Settings(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_schedulers_lists_every_name():
    result = sdviz_cli("schedulers")
    assert result.returncode == 0
    for name, class_name, _ in schedulers.describe():
        assert name in result.stdout and class_name in result.stdout


BAD_INPUTS = [
    (["--steps", "0"], "steps 0 is out of range; allowed: 1..1000"),
    (["--steps", "1001"], "steps 1001 is out of range"),
    (["--guidance", "nan"], "guidance nan is not finite"),
    (["--guidance", "-1"], "guidance -1.0 is out of range"),
    (["--eta", "-0.1"], "eta -0.1 is out of range"),
    (["--seed", "-5"], "seed -5 is out of range"),
    (["--width", "63"], "width 63 is not a multiple of the model's VAE factor"),
    (["--height", "100000"], "height 100000 is out of range"),
    (["--scheduler", "bogus"], "unknown scheduler 'bogus'; allowed: ddim, pndm"),
    (["--preview", "sketch"], "preview 'sketch' is not one of the choices; allowed: full, approx, taesd"),
    (["--every", "0"], "every 0 is out of range"),
    (["--init-image", "missing.png"], "init image 'missing.png' does not exist"),
    (["--init-image", "EMPTY", "--strength", "0.5"], "is empty (0 bytes)"),
    (["--init-image", "CORRUPT"], "is not a readable image"),
    (["--init-image", "GOOD", "--strength", "0"], "strength 0.0 is out of range; allowed: (0, 1]"),
    (["--init-image", "GOOD", "--strength", "1.5"], "strength 1.5 is out of range"),
    (["--init-image", "GOOD", "--strength", "0.01", "--steps", "20"], "keeps no denoising step"),
    (["--model", "no/such/dir/"], "does not exist and is not a hub id"),
    (["--model", "NOTPIPELINE"], "is not a diffusers pipeline: no model_index.json"),
    (["--preview", "taesd"], "preview 'taesd'"),
]


def _bad_input_files(folder: Path) -> None:
    (folder / "EMPTY").write_bytes(b"")
    (folder / "CORRUPT").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.new("RGB", (8, 8)).save(folder / "GOOD", format="PNG")
    (folder / "NOTPIPELINE").mkdir()


def _one_error_line(stderr: str, message: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("sdviz: error:")]
    assert len(lines) == 1 and message in lines[0], stderr


@pytest.mark.parametrize("extra,message", BAD_INPUTS, ids=[m[:30] for _, m in BAD_INPUTS])
def test_bad_input_is_one_clear_line(tmp_path, monkeypatch, capsys, extra, message):
    _bad_input_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = [a if a not in ("EMPTY", "CORRUPT", "GOOD", "NOTPIPELINE") else str(tmp_path / a) for a in extra]
    # later options win, so `extra` can override the short default run
    assert cli.main(["render", "--prompt", "x", "--steps", "2", *args, "--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys.readouterr().err, message)
    assert not (tmp_path / "out" / "final.png").exists()


@pytest.mark.parametrize("extra,message", [BAD_INPUTS[0], BAD_INPUTS[6]], ids=["before the model", "after it"])
def test_bad_input_from_a_shell_is_one_line_and_exit_code_2(tmp_path, extra, message):
    result = sdviz_cli("render", "--prompt", "x", "--steps", "2", *extra, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    _one_error_line(result.stderr, message)
    assert not (tmp_path / "out").exists()


def test_a_failure_inside_diffusers_is_not_reported_as_bad_input(tmp_path, monkeypatch, capsys):
    """Only sdviz's own refusals are the user's error (exit code 2); diffusers' ValueError about its
    internals keeps its traceback, for the report."""
    from diffusers import DDIMScheduler

    monkeypatch.setattr(cli, "render", lambda args: DDIMScheduler().set_timesteps(5000))
    with pytest.raises(ValueError, match="num_inference_steps"):
        cli.main(["render", "--prompt", "x", "--out", str(tmp_path)])
    assert "sdviz: error" not in capsys.readouterr().err


def test_layers_json_comes_from_the_model():
    result = sdviz_main("layers", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["kind"] for r in rows} == {"self", "cross"}
    assert [r["order"] for r in rows] == list(range(1, len(rows) + 1))
