"""Writing a run's files: what `python -m sdviz render` writes, step by step.

    for path in write_run(trajectory, "out", previewer, page=True):   # each file as it is written
        ...
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


def export_all(trajectory, folder: str | Path, previewer=None) -> dict[str, Path]:
    """Everything the CLI writes: final.png, step PNGs, filmstrip, GIF, MP4, JSON + latents; with the
    run's `previewer`, the guidance halves' x0 frames too."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    if trajectory.final_image is not None:
        out["final"] = folder / "final.png"
        Image.fromarray(trajectory.final_image).save(out["final"])
    save_step_pngs(trajectory, folder)
    if previewer is not None:
        save_guidance_pngs(trajectory, previewer, folder)
    out["filmstrip"] = folder / "filmstrip.png"
    filmstrip(trajectory).save(out["filmstrip"])
    out["gif"] = save_gif(trajectory, folder / "trajectory.gif")
    out["mp4"] = save_mp4(trajectory, folder / "trajectory.mp4")
    trajectory.save(folder)
    out["json"], out["latents"] = folder / "trajectory.json", folder / "latents.npz"
    return out


def write_run(trajectory, folder: str | Path, decode=None, previewer=None, page: bool = False) -> dict[str, Path]:
    """A run's folder as `python -m sdviz render` writes it: the distances to the final image (computed
    if missing), everything `export_all` writes, with attention maps attention/<k>_<word>.png, an edit's
    edit.png (its source chain, itself and their difference), and (page)
    run.html, the page that replays it. decode(record, alone) decodes frames that are not kept (the
    run's `previewer.record_frames`)."""
    if trajectory.steps and trajectory.distance_to_final is None:
        trajectory.distance_to_final = distance_to_final(trajectory, decode)
    complete = trajectory.with_frames(decode)
    written = export_all(complete, folder, previewer=previewer)
    if trajectory.attention is not None:
        write_overlays(complete, Path(folder) / "attention")
    if previewer is not None and is_edit(trajectory):  # the source's chain, the edit's and their difference
        written["edit"] = Path(folder) / "edit.png"
        edit_sheet(complete, previewer, decode).save(written["edit"])
    if page:
        written["html"] = write_page(complete, Path(folder) / "run.html", decode, previewer,
                                     previewer.model.latent_rgb if previewer is not None else None)
    return written


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
