"""A saved run is someone's file. `sdviz html RUN_DIR`, `sdviz render --fork RUN_DIR` and `Trajectory.load` read
it against a schema: each crafted folder below (a truncated archive, invalid JSON, a missing key, more steps than
latents, a wrong shape, a frame that is not an image, a pickled array, NaN, a million characters, a link leading
out of the folder, a model the command line did not name) is refused with one line naming the file and the field,
and exit status 2, never a traceback; an intact folder still loads bit for bit."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz.cli import main
from sdviz.drawing.sheets import step_file
from sdviz.sampling.attention import AttentionCapture
from sdviz.sampling.errors import InputError
from sdviz.sampling.trajectory import LATENT_FIELDS, Trajectory
from sdviz.workflows.render import run_files
from tests.helpers import sdviz_cli

PROMPT = "a red circle on the left on a blue background"
STEPS = 3
SIDE = 32  # pixels: latents (4, 8, 8) with the shapes model's VAE factor 4


@pytest.fixture(scope="module")
def saved(embedded, tmp_path_factory):
    """(trajectory, folder): one small guided run with attention, written as `render` writes its run files
    (trajectory.json, latents.npz, frames.npz, attention.npz, and the guidance halves' PNGs)."""
    run = sdviz.Run(embedded, sdviz.Settings(prompt=PROMPT, steps=STEPS, width=SIDE, height=SIDE, seed=3),
                    capture=AttentionCapture(embedded))
    for _ in run:
        pass
    folder = tmp_path_factory.mktemp("saved") / "run"
    list(run_files(run.trajectory, folder, run.previewer, ("guidance", "trajectory")))
    return run.trajectory, folder


@pytest.fixture
def folder(saved, tmp_path) -> Path:
    """A fresh copy of the saved run, to damage."""
    return Path(shutil.copytree(saved[1], tmp_path / "run", symlinks=True))


# -- the damage ---------------------------------------------------------------------------------------------


def edit_json(change):
    def damage(folder: Path) -> None:
        meta = json.loads((folder / "trajectory.json").read_text())
        meta = change(meta) or meta
        (folder / "trajectory.json").write_text(json.dumps(meta))
    return damage


def edit_npz(name: str, change, compressed: bool = True):
    def damage(folder: Path) -> None:
        with np.load(folder / name, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        change(arrays)
        (np.savez_compressed if compressed else np.savez)(folder / name, **arrays)
    return damage


def truncate(name: str):
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    return damage


def write(name: str, data: bytes):
    def damage(folder: Path) -> None:
        (folder / name).write_bytes(data)
    return damage


def link_out(name: str):
    """`name` replaced by a link to a copy of itself outside the folder: a valid file, in the wrong place."""
    def damage(folder: Path) -> None:
        outside = folder.parent / "elsewhere" / name
        outside.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(folder / name, outside)
        (folder / name).symlink_to(outside)
    return damage


def guidance_png(kind: str, image):
    """Step 2's guidance-half PNG replaced: bytes, an array, or a link to a PNG outside the folder."""
    def damage(folder: Path) -> None:
        path = folder / kind / step_file(1, STEPS)
        path.unlink()
        if isinstance(image, bytes):
            path.write_bytes(image)
        elif isinstance(image, np.ndarray):
            Image.fromarray(image).save(path)
        else:
            outside = folder.parent / "outside.png"
            Image.fromarray(np.zeros((SIDE, SIDE, 3), np.uint8)).save(outside)
            path.symlink_to(outside)
    return damage


def pop(part: str, key: str):
    return edit_json(lambda meta: meta[part].pop(key) and None)


def put(part: str, key: str, value):
    def change(meta):
        meta[part][key] = value
    return edit_json(change)


def one_more_step(meta):
    meta["steps"].append({**meta["steps"][-1], "index": len(meta["steps"])})


def undecoded_step_0(folder: Path) -> None:
    """frames.npz without step 1's frames, as a run with --every 2 saves it: the page must decode them."""
    def drop(arrays):
        arrays["frame_steps"], arrays["x_t"], arrays["x0"] = (arrays[k][1:] for k in ("frame_steps", "x_t", "x0"))
    edit_npz("frames.npz", drop)(folder)


def made_with(model: str):
    def damage(folder: Path) -> None:
        put("settings", "model", model)(folder)
        undecoded_step_0(folder)
    return damage


def replace(key: str, value):
    def change(arrays):
        arrays[key] = value
    return change


def nested_forks(depth: int) -> dict:
    """settings.forked_from of a fork of a fork ... `depth` times."""
    fork = None
    for _ in range(depth):
        fork = {"at": 0, "parent": {"prompt": "", "scheduler": "ddim", "steps": 1, "guidance": 1, "seed": 0,
                                    "width": 8, "height": 8, "model": "m", "forked_from": fork}}
    return fork


OBJECTS = np.array([{"__reduce__": "os.system"}] * STEPS, dtype=object)

# (id, damage, what the one line says): the files Trajectory.load reads, so each is refused by it and by html
CASES = [
    ("truncated latents", truncate("latents.npz"), "latents.npz is corrupt or truncated"),
    ("truncated frames", truncate("frames.npz"), "frames.npz is corrupt or truncated"),
    ("truncated attention", truncate("attention.npz"), "attention.npz is corrupt or truncated"),
    ("latents not a zip", write("latents.npz", b"\x93NUMPY" + b"\0" * 100), "latents.npz is not an npz archive"),
    ("latents a pickle", write("latents.npz", pickle.dumps({"x_t": 1})), "latents.npz is not an npz archive"),
    ("invalid json", write("trajectory.json", b'{"format": "sdviz-trajectory/1", '),
     "trajectory.json is not valid JSON"),
    ("json not utf-8", write("trajectory.json", b'{"format": "\xff\xfe"}'), "trajectory.json is not valid JSON"),
    ("json nested too deep", write("trajectory.json", b"[" * 100000 + b"]" * 100000), "trajectory.json is not valid"),
    ("json a list", edit_json(lambda meta: [meta]), "trajectory.json: [{"),
    ("json another format", edit_json(lambda meta: {**meta, "format": "other/2"}), "trajectory.json: format 'other/2'"),
    ("missing steps", edit_json(lambda meta: meta.pop("steps") and None), "trajectory.json: steps is missing"),
    ("missing settings", edit_json(lambda meta: meta.pop("settings") and None), "trajectory.json: settings is missing"),
    ("missing shapes", edit_json(lambda meta: meta.pop("shapes") and None), "trajectory.json: shapes is missing"),
    ("missing height", pop("settings", "height"), "trajectory.json: settings.height is missing"),
    ("missing vae factor", pop("facts", "vae_factor"), "trajectory.json: facts.vae_factor is missing"),
    ("more steps than latents", edit_json(one_more_step), "latents.npz: x_t_in has shape (3, 4, 8, 8); allowed: "
                                                          "(steps=4, 4, 8, 8)"),
    ("steps past the settings", edit_json(lambda meta: [one_more_step(meta) for _ in range(4)] and None),
     "trajectory.json: steps has 7 entries; allowed: up to 2 x settings.steps = 6"),
    ("a step out of place", edit_json(lambda meta: meta["steps"][1].update(index=2)), "steps[1].index 2"),
    ("wrong latent shape", edit_npz("latents.npz", replace("x_t", np.zeros((3, 4, 8, 9), np.float32))),
     "latents.npz: x_t has shape (3, 4, 8, 9); allowed: (steps=3, 4, 8, 8)"),
    ("latents of float64", edit_npz("latents.npz", replace("x_start", np.zeros((4, 8, 8)))),
     "latents.npz: x_start has dtype float64; allowed: float32"),
    ("latents missing", edit_npz("latents.npz", lambda arrays: arrays.pop("x0_pred")),
     "latents.npz: x0_pred is missing"),
    ("an unknown array", edit_npz("latents.npz", replace("evil", np.zeros(1))), "latents.npz holds 'evil'"),
    ("pickled latents", edit_npz("latents.npz", replace("x_t", OBJECTS), compressed=False),
     "latents.npz: x_t has dtype object; allowed: float32"),
    ("shapes not the run's", edit_json(lambda meta: meta["shapes"].update(latents=[4, 8, 9])),
     "trajectory.json: shapes.latents [4, 8, 9] does not fit"),
    ("frames of float", edit_npz("frames.npz", replace("x_t", np.zeros((3, SIDE, SIDE, 3), np.float32))),
     "frames.npz: x_t has dtype float32; allowed: uint8"),
    ("frames of another size", edit_npz("frames.npz", replace("x0", np.zeros((3, 16, 16, 3), np.uint8))),
     "frames.npz: x0 has shape (3, 16, 16, 3); allowed: (3, 32, 32, 3)"),
    ("a final image in 2-D", edit_npz("frames.npz", replace("final_image", np.zeros((SIDE, SIDE), np.uint8))),
     "frames.npz: final_image has shape (32, 32); allowed: (32, 32, 3)"),
    ("frame steps out of range", edit_npz("frames.npz", replace("frame_steps", np.array([0, 1, 9]))),
     "frames.npz: frame_steps [0, 1, 9] are not increasing step indices"),
    ("pickled attention tokens", edit_npz("attention.npz", replace("tokens", np.array(["a"] * 7, dtype=object)),
                                          compressed=False), "attention.npz: tokens has dtype object"),
    ("attention of another grid", edit_npz("attention.npz", replace("cross:8x8", np.zeros((3, 1, 8, 8), np.float16))),
     "attention.npz: cross:8x8 has shape (3, 1, 8, 8); allowed: (steps=3, tokens="),
    ("attention past the latents", edit_npz("attention.npz", replace("cross:64x64", np.zeros((3, 1, 64, 64), "f2"))),
     "attention.npz: cross:64x64's grid is not a grid; allowed: HxW of at most 8x8"),
    ("nan guidance", put("settings", "guidance", math.nan), "trajectory.json: settings.guidance nan is not finite"),
    ("infinite sigma", edit_json(lambda meta: meta["steps"][1].update(sigma=math.inf)),
     "trajectory.json: steps[1].sigma inf is not finite"),
    ("a huge seed", put("settings", "seed", 10**400), "trajectory.json: settings.seed <an integer of"),
    ("a huge width", put("settings", "width", 10**6), "trajectory.json: settings.width 1000000 is out of range"),
    ("steps true", put("settings", "steps", True), "trajectory.json: settings.steps True is not a whole number"),
    ("a million-character prompt", put("settings", "prompt", "x" * 10**6),
     "trajectory.json: settings.prompt has 1000000 characters; allowed: up to 2000"),
    ("a million-character model name", put("facts", "name", "m" * 10**6), "trajectory.json: facts.name has 1000000"),
    ("a million-character token", edit_json(lambda meta: meta["tokens"]["slots"][1].update(token="t" * 10**6)),
     "trajectory.json: tokens.slots[1].token has 1000000 characters"),
    ("a million warnings", edit_json(lambda meta: meta.update(warnings=["w"] * 10**6)),
     "trajectory.json: warnings has 1000000 items"),
    ("an unknown scheduler", put("settings", "scheduler", "rm -rf"), "trajectory.json: settings.scheduler 'rm -rf'"),
    ("forks nested past the limit", put("settings", "forked_from", nested_forks(70)),
     "trajectory.json: settings.forked_from nests more than 64 forks"),
    ("frames linked out", link_out("frames.npz"), "frames.npz leads out of the run folder"),
    ("trajectory linked out", link_out("trajectory.json"), "trajectory.json leads out of the run folder"),
    ("attention linked out", link_out("attention.npz"), "attention.npz leads out of the run folder"),
    ("latents a folder", lambda f: (f / "latents.npz").unlink() or (f / "latents.npz").mkdir(),
     "latents.npz is not a file"),
    ("latents a link loop", lambda f: (f / "latents.npz").unlink() or (f / "latents.npz").symlink_to("latents.npz"),
     "latents.npz cannot be resolved"),
]
PAGE_ONLY = [  # what html reads (and writes) beside them
    ("guidance frame linked out", guidance_png("x0_cond", None), f"x0_cond/{step_file(1, STEPS)} leads out of the run"),
    ("guidance frame not an image", guidance_png("x0_uncond", b"GIF89a" + b"\0" * 20),
     f"x0_uncond/{step_file(1, STEPS)} '{step_file(1, STEPS)}' is not a readable image"),
    ("guidance frame of another size", guidance_png("x0_cond", np.zeros((8, 8, 3), np.uint8)),
     f"x0_cond/{step_file(1, STEPS)} is 8 x 8 pixels; allowed: 32 x 32"),
    ("page linked out", lambda f: (f / "run.html").symlink_to(f.parent / "outside.html"),
     "run.html in RUN_DIR is a link"),
    ("a model not named", made_with("someone/evil-model"), "was made with the model 'someone/evil-model', which only "
                                                           "--model can name"),
]


def one_line(code: int, err: str) -> str:
    """The refusal's line, once it is checked to be all stderr holds, with status 2."""
    lines = err.splitlines()
    assert code == 2, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("sdviz: error: "), err[-3000:]
    assert "Traceback" not in err
    return lines[0]


def html(folder: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    code = main(["html", str(folder), *extra])
    return one_line(code, capsys.readouterr().err)


# -- the tests -------------------------------------------------------------------------------------------------


def test_an_intact_folder_loads_bit_for_bit_and_makes_its_page(saved, folder, capsys):
    traj, _ = saved
    loaded = Trajectory.load(folder)
    assert loaded.settings == traj.settings and loaded.facts == traj.facts and loaded.shapes == traj.shapes
    assert loaded.tokens == traj.tokens and loaded.timings == traj.timings and loaded.warnings == traj.warnings
    assert loaded.complete == traj.complete and loaded.distance_to_final == traj.distance_to_final
    for name in ("x_start", "noise_image", "final_image"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(traj, name), err_msg=name)
    assert len(loaded.steps) == STEPS
    for mine, theirs in zip(loaded.steps, traj.steps):
        assert ((mine.index, mine.timestep, mine.sigma, mine.next_vp_scale, mine.x0_slope, mine.eta, mine.seconds)
                == (theirs.index, theirs.timestep, theirs.sigma, theirs.next_vp_scale, theirs.x0_slope, theirs.eta,
                    theirs.seconds))
        for name in (*LATENT_FIELDS, "x0_uncond", "x0_cond", "x_t_image", "x0_image"):
            mine_value, theirs_value = getattr(mine, name), getattr(theirs, name)
            assert (mine_value is None) == (theirs_value is None), name
            if mine_value is not None:
                assert mine_value.dtype == theirs_value.dtype and mine_value.tobytes() == theirs_value.tobytes(), name
    maps, theirs = loaded.attention, traj.attention
    assert (maps.tokens, maps.kinds, maps.steps, maps.latent_hw, maps.image_hw, maps.layer_counts) == (
        theirs.tokens, theirs.kinds, theirs.steps, theirs.latent_hw, theirs.image_hw, theirs.layer_counts)
    assert maps.cross.keys() == theirs.cross.keys()
    for key in maps.cross:
        assert maps.cross[key].tobytes() == theirs.cross[key].tobytes()
    capsys.readouterr()
    assert main(["html", str(folder)]) == 0, capsys.readouterr().err
    assert (folder / "run.html").stat().st_size > 10_000


def test_links_within_the_folder_are_followed(saved, folder, capsys):
    (folder / "kept").mkdir()
    for name in ("frames.npz", "trajectory.json"):
        shutil.move(folder / name, folder / "kept" / name)
        (folder / name).symlink_to(Path("kept") / name)
    assert len(Trajectory.load(folder).steps) == STEPS
    assert main(["html", str(folder)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("damage, says", [case[1:] for case in CASES + PAGE_ONLY],
                         ids=[case[0] for case in CASES + PAGE_ONLY])
def test_html_refuses_a_damaged_folder_in_one_line(folder, capsys, damage, says):
    damage(folder)
    line = html(folder, capsys)
    assert says in line, line
    assert len(line) < 600  # a million characters are not printed back


@pytest.mark.parametrize("damage, says", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_trajectory_load_raises_input_error(folder, damage, says):
    damage(folder)
    with pytest.raises(InputError) as raised:
        Trajectory.load(folder)
    assert says in str(raised.value) and "\n" not in str(raised.value)


FORKED = ["truncated latents", "json a list", "more steps than latents", "pickled latents", "frames linked out",
          "a million-character prompt", "a model not named"]


@pytest.mark.parametrize("damage, says", [case[1:] for case in CASES + PAGE_ONLY if case[0] in FORKED],
                         ids=[case[0] for case in CASES + PAGE_ONLY if case[0] in FORKED])
def test_render_fork_refuses_a_damaged_parent_in_one_line(folder, capsys, tmp_path, damage, says):
    damage(folder)
    capsys.readouterr()
    code = main(["render", "--fork", str(folder), "--at", "1", "--out", str(tmp_path / "fork")])
    line = one_line(code, capsys.readouterr().err)
    assert says in line, line
    assert not (tmp_path / "fork").exists()


def test_a_comparison_reads_its_variants_from_inside_its_folder(folder, tmp_path, capsys):
    comparison = tmp_path / "comparison"
    comparison.mkdir()
    shutil.move(folder, comparison / "01_ddim")
    summary = {"format": "sdviz-comparison/1", "align": "progress",
               "variants": [{"folder": "01_ddim", "label": "scheduler=ddim"}]}
    (comparison / "compare.json").write_text(json.dumps(summary))
    assert main(["html", str(comparison)]) == 0, capsys.readouterr().err
    assert (comparison / "compare.html").is_file()
    for variants, says in (([{"folder": "../..", "label": "up"}], "../.. leads out of the run folder"),
                           ([{"folder": "01_ddim"}], "compare.json: variants[0].label is missing"),
                           ([{"folder": "01_ddim", "label": "x"}] * 99, "compare.json: variants has 99 items"),
                           ("01_ddim", "compare.json: variants '01_ddim' is not a list")):
        (comparison / "compare.json").write_text(json.dumps({**summary, "variants": variants}))
        assert says in html(comparison, capsys), says
    (comparison / "compare.json").write_text(json.dumps(summary))
    truncate("latents.npz")(comparison / "01_ddim")
    assert "01_ddim/latents.npz is corrupt or truncated" in html(comparison, capsys)


@pytest.mark.parametrize("command, damage, says", [
    ("html", link_out("frames.npz"), "frames.npz leads out of the run folder"),
    ("html", edit_npz("latents.npz", replace("x_t", OBJECTS), compressed=False), "latents.npz: x_t has dtype object"),
    ("render", truncate("latents.npz"), "latents.npz is corrupt or truncated"),
    ("render", write("trajectory.json", b"{,}"), "trajectory.json is not valid JSON"),
], ids=["html linked frames", "html pickled latents", "fork truncated latents", "fork invalid json"])
def test_the_real_command_line_prints_one_line(folder, tmp_path, command, damage, says):
    damage(folder)
    args = ["html", str(folder)] if command == "html" else [
        "render", "--fork", str(folder), "--at", "1", "--out", str(tmp_path / "fork")]
    result = sdviz_cli(*args)
    line = one_line(result.returncode, result.stderr)
    assert says in line, line
