"""Writing a run's files: what `sdviz render` writes, each file as it is written.

    for part, path in run_files(trajectory, "out", run.previewer):   # a generator: each file as written
        ...
    write_run(trajectory, "out", run.previewer, page=True)          # all of them: {part: path}
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sdviz.analysis.distance import distance_to_final
from sdviz.analysis.edit import is_edit
from sdviz.drawing.edit import sheet as edit_sheet
from sdviz.drawing.page import write_page
from sdviz.drawing.sheets import filmstrip, save_gif, save_mp4, step_file
from sdviz.drawing.views import overlay
from sdviz.sampling.tokens import shown


def save_step_pngs(trajectory, folder: str | Path) -> list[Path]:
    """xt/NNN.png (x_t after step NNN), x0/NNN.png, xt/noise.png; NNN from 000."""
    from PIL import Image

    folder = Path(folder)
    written = []
    (folder / "xt").mkdir(parents=True, exist_ok=True)
    (folder / "x0").mkdir(parents=True, exist_ok=True)
    if trajectory.noise_image is not None:
        written.append(folder / "xt" / "noise.png")
        Image.fromarray(trajectory.noise_image).save(written[-1])
    for step in trajectory.decoded_steps():
        name = step_file(step.index, len(trajectory.steps))
        for sub, frame in (("xt", step.x_t_image), ("x0", step.x0_image)):
            written.append(folder / sub / name)
            Image.fromarray(frame).save(written[-1])
    return written


def save_guidance_pngs(trajectory, previewer, folder: str | Path) -> list[Path]:
    """x0_uncond/NNN.png and x0_cond/NNN.png for the decoded steps of a guided run, decoded here with
    the run's preview decoder (the sampling loop decodes only x_t and the guided x0)."""
    from PIL import Image

    folder = Path(folder)
    steps = [s for s in trajectory.decoded_steps() if s.x0_uncond is not None]
    if not steps:
        return []
    (folder / "x0_uncond").mkdir(parents=True, exist_ok=True)
    (folder / "x0_cond").mkdir(parents=True, exist_ok=True)
    written = []
    for step in steps:
        for sub, frame in zip(("x0_uncond", "x0_cond"), previewer.guidance_frames(step)):
            written.append(folder / sub / step_file(step.index, len(trajectory.steps)))
            Image.fromarray(frame).save(written[-1])
    return written


PARTS = ("final", "steps", "guidance", "filmstrip", "gif", "mp4", "trajectory", "attention", "edit")
DOWNLOADS = ("filmstrip", "gif", "mp4", "zip", "page")  # what the app offers for download, in its order


def run_files(trajectory, folder: str | Path, previewer=None, parts=PARTS):
    """Writes a run's files into `folder`, yielding (part, path) as each is written; what `sdviz render`
    writes (`parts`, in this order):

        final       final.png
        steps       xt/NNN.png, x0/NNN.png, xt/noise.png
        guidance    x0_uncond/NNN.png, x0_cond/NNN.png (guided runs; needs the previewer)
        filmstrip   filmstrip.png
        gif, mp4    trajectory.gif, trajectory.mp4
        trajectory  trajectory.json, latents.npz, frames.npz (attention.npz), with each step's distance to
                    the final image (measured here when the trajectory has none)
        zip         trajectory.zip: the same as one file
        attention   attention/<k>_<word>.png (runs with attention maps)
        edit        edit.png: an edit's source chain, its own and their difference (needs the previewer)
        page        run.html, the page that replays the run with no server

    The run's `previewer` decodes again the steps whose frames are not kept (every N steps, or released)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if trajectory.steps and trajectory.distance_to_final is None and "trajectory" in parts:
        trajectory.distance_to_final = distance_to_final(trajectory, previewer)
    complete = trajectory.with_frames(previewer)
    for part in parts:
        yield from _PARTS[part](complete, folder, previewer)


def write_run(trajectory, folder: str | Path, previewer=None, page: bool = False) -> dict[str, Path]:
    """A run's folder as `sdviz render` writes it (`run_files`' parts, and run.html with `page`):
    part -> its first file."""
    written: dict[str, Path] = {}
    for part, path in run_files(trajectory, folder, previewer, PARTS + (("page",) if page else ())):
        written.setdefault(part, path)
    return written


def _final(traj, folder: Path, previewer):
    from PIL import Image

    if traj.final_image is not None:
        Image.fromarray(traj.final_image).save(folder / "final.png")
        yield "final", folder / "final.png"


def _steps(traj, folder: Path, previewer):
    for path in save_step_pngs(traj, folder):
        yield "steps", path


def _guidance(traj, folder: Path, previewer):
    for path in save_guidance_pngs(traj, previewer, folder) if previewer is not None else ():
        yield "guidance", path


def _filmstrip(traj, folder: Path, previewer):
    if traj.decoded_steps():  # a run stopped before its first decoded step has no frames to draw
        filmstrip(traj).save(folder / "filmstrip.png")
        yield "filmstrip", folder / "filmstrip.png"


def _gif(traj, folder: Path, previewer):
    if traj.decoded_steps():
        yield "gif", save_gif(traj, folder / "trajectory.gif")


def _mp4(traj, folder: Path, previewer):
    if traj.decoded_steps():
        yield "mp4", save_mp4(traj, folder / "trajectory.mp4")


def _trajectory(traj, folder: Path, previewer):
    traj.save(folder)
    for name in ("trajectory.json", "latents.npz", "frames.npz", "attention.npz"):
        if (folder / name).exists():
            yield "trajectory", folder / name


def _zip(traj, folder: Path, previewer):
    yield "zip", write_trajectory_zip(traj, folder / "trajectory.zip")


def _attention(traj, folder: Path, previewer):
    for path in write_overlays(traj, folder / "attention") if traj.attention is not None else ():
        yield "attention", path


def _edit(traj, folder: Path, previewer):
    if previewer is not None and is_edit(traj):  # the source's chain, the edit's and their difference
        edit_sheet(traj, previewer).save(folder / "edit.png")
        yield "edit", folder / "edit.png"


def _page(traj, folder: Path, previewer):
    yield "page", write_page(traj, folder / "run.html", previewer)


def write_trajectory_zip(traj, path: Path) -> Path:
    """The trajectory (JSON + latents + frames) as one zip; no unzipped copy stays on disk."""
    import shutil
    import zipfile

    saved = traj.save(Path(path).with_suffix(""))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(saved.iterdir()):
            archive.write(item, item.name)
    shutil.rmtree(saved)
    return Path(path)


_PARTS = {"final": _final, "steps": _steps, "guidance": _guidance, "filmstrip": _filmstrip, "gif": _gif,
          "mp4": _mp4, "trajectory": _trajectory, "zip": _zip, "attention": _attention, "edit": _edit,
          "page": _page}


def safe_name(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", shown(token)) or "token"


def write_overlays(trajectory, folder: str | Path) -> list[Path]:
    """attention/<k>_<word>.png: each word's whole-run map over the final image (k: its slot); the negative
    prompt's words as attention/negative_<k>_<word>.png."""
    from PIL import Image

    maps = trajectory.attention
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = trajectory.final_image if trajectory.final_image is not None else trajectory.steps[-1].x0_image
    written = []
    for prefix, words in (("", maps), ("negative_", maps.negative)):
        for index in words.word_slots() if words is not None else ():
            path = folder / f"{prefix}{index}_{safe_name(words.tokens[index])}.png"
            Image.fromarray(overlay(base, words.heat_map(index))).save(path)
            written.append(path)
    return written


def write_forward(process, folder: str | Path) -> list[Path]:
    """A forward process (`sdviz.analysis.forward.forward_process`) as files: forward.npz (timesteps,
    sigmas, alpha_bar, x0, noise, x_t) and forward/NNN.png, its decoded x_t."""
    from PIL import Image

    folder = Path(folder)
    (folder / "forward").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "forward.npz", timesteps=process.timesteps, sigmas=process.sigmas,
                        alpha_bar=process.alpha_bar, x0=process.x0, noise=process.noise, x_t=process.x_t)
    written = [folder / "forward.npz"]
    for index, frame in enumerate(process.frames):
        written.append(folder / "forward" / step_file(index, len(process.frames)))
        Image.fromarray(frame).save(written[-1])
    return written
