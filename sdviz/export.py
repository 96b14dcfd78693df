"""Exports of a trajectory: filmstrip PNG, animated GIF, MP4, per-step PNGs.

The filmstrip follows *The Illustrated Stable Diffusion*: decoded latents in a
row from noise to image, each with its step number; with many steps a readable
selection (always the noise and the last step). GIF and MP4 go through imageio
(MP4 with the ffmpeg binary that imageio-ffmpeg ships).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_VIDEO_SIDE = 256  # small frames are enlarged (nearest neighbour) to at least this
FILMSTRIP_FRAMES = 10  # at most this many frames per row
FILMSTRIP_SIDE = 128  # frames in the filmstrip are scaled to this height at least


def pick(count: int, most: int) -> list[int]:
    """Up to `most` indices from 0..count-1, evenly spread, always the first and the last."""
    if count <= most:
        return list(range(count))
    return sorted({round(k * (count - 1) / (most - 1)) for k in range(most)})


def step_file(index: int, count: int) -> str:
    """NNN.png for step `index` of `count`: zero-padded to at least 3 digits, so names sort in step order."""
    return f"{index:0{max(3, len(str(count - 1)))}d}.png"


def enlarge(frame: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so the short side is at least `side`."""
    factor = max(1, -(-side // min(frame.shape[:2])))
    return frame.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else frame


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def filmstrip(trajectory, most: int = FILMSTRIP_FRAMES, with_x0: bool = True):
    """A PIL image: the row of decoded x_t from noise to image, step numbers under each,
    and (with_x0) the predicted x0 of the same steps beneath."""
    x_t = trajectory.frames("x_t")
    chosen = pick(len(x_t), most)
    if not chosen:
        raise ValueError("the trajectory has no decoded frames to draw")
    columns = [x_t[k] for k in chosen]
    rows = [("x_t", [(_step_label(label), frame) for label, frame in columns])]
    if with_x0:
        x0 = dict(trajectory.frames("x0"))
        rows.append(("predicted x0", [(_step_label(label), x0.get(label)) for label, _ in columns]))
    total = len(trajectory.steps) if trajectory.steps else 0
    scheduler = trajectory.settings.scheduler
    return sheet(rows, f"denoising steps (of {total}, {scheduler}): from noise to image")


def _step_label(label: str) -> str:
    return label if label == "noise" else f"step {label}"


def sheet(rows: list[tuple[str, list[tuple[str, np.ndarray | None]]]], title: str = "",
          marked: dict[int, str] | None = None):
    """A PIL image of rows of frames: each row a label and (caption, frame or None) columns, captions
    under the frames, frames enlarged to FILMSTRIP_SIDE high at least (nearest neighbour, pixels kept);
    `marked` columns (index -> note) framed in red with the note above the first row."""
    from PIL import Image, ImageDraw

    sample = next((frame for _, columns in rows for _, frame in columns if frame is not None), None)
    if sample is None:
        raise ValueError("the sheet has no frames to draw")
    scale = max(1, -(-FILMSTRIP_SIDE // sample.shape[0]))
    tile_h, tile_w = sample.shape[0] * scale, sample.shape[1] * scale
    gap, label_h = max(4, tile_w // 16), max(16, tile_h // 6)
    font = _font(max(11, label_h - 4))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = max(70, tile_w // 2, *(int(measure.textlength(name, font=font)) + 12 for name, _ in rows))
    title_h = label_h + 6 + (label_h if marked else 0)
    count = max(len(columns) for _, columns in rows)
    width = max(margin + count * (tile_w + gap), int(measure.textlength(title, font=font)) + 8)
    canvas = Image.new("RGB", (width, title_h + len(rows) * (tile_h + label_h + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill="black", font=font)
    for column, note in (marked or {}).items():
        draw.text((margin + column * (tile_w + gap), title_h - label_h - 2), note, fill=(200, 0, 0), font=font)
    for r, (name, columns) in enumerate(rows):
        top = title_h + r * (tile_h + label_h + gap)
        draw.text((4, top + tile_h // 2 - label_h // 2), name, fill="black", font=font)
        for c, (caption, frame) in enumerate(columns):
            left = margin + c * (tile_w + gap)
            if frame is not None:
                canvas.paste(Image.fromarray(frame).resize((tile_w, tile_h), Image.Resampling.NEAREST), (left, top))
            if marked and c in marked:
                draw.rectangle((left - 2, top - 2, left + tile_w + 1, top + tile_h + 1), outline=(200, 0, 0), width=3)
            draw.text((left + 2, top + tile_h + 1), caption, fill="black", font=font)
    return canvas


def _video_frames(trajectory, kind: str) -> list[np.ndarray]:
    frames = [frame for _, frame in trajectory.frames(kind) if frame is not None]
    if not frames:
        raise ValueError("the trajectory has no decoded frames to animate")
    return [enlarge(frame, MIN_VIDEO_SIDE) for frame in frames]


def save_gif(trajectory, path: str | Path, fps: float = 8.0, kind: str = "x_t", hold_last: float = 1.5) -> Path:
    """An animated GIF (looping) of the decoded frames; the last one is held `hold_last` s."""
    return write_gif(_video_frames(trajectory, kind), path, fps, hold_last)


def write_gif(frames: list[np.ndarray], path: str | Path, fps: float = 8.0, hold_last: float = 1.5) -> Path:
    """Frames of one size as a looping GIF; the last one is held `hold_last` s."""
    import imageio.v3 as iio

    durations = [1000.0 / fps] * len(frames)
    durations[-1] = max(durations[-1], hold_last * 1000.0)
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=durations, loop=0)
    return Path(path)


def save_mp4(trajectory, path: str | Path, fps: float = 8.0, kind: str = "x_t", hold_last: float = 1.5) -> Path:
    """An H.264 MP4 of the decoded frames (yuv420p, plays in browsers)."""
    return write_mp4(_video_frames(trajectory, kind), path, fps, hold_last)


def write_mp4(frames: list[np.ndarray], path: str | Path, fps: float = 8.0, hold_last: float = 1.5) -> Path:
    """Frames of one size as an H.264 MP4 (yuv420p, plays in browsers); the last one held `hold_last` s."""
    import imageio.v2 as imageio

    frames = list(frames) + [frames[-1]] * int(round(hold_last * fps))
    height, width = frames[0].shape[:2]
    frames = [_pad_even(f) for f in frames] if (height % 2 or width % 2) else frames
    with imageio.get_writer(
        str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
        macro_block_size=1, ffmpeg_log_level="error",
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
    return Path(path)


def _pad_even(frame: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


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

    from sdviz.explain import guidance_frames

    folder = Path(folder)
    steps = [s for s in trajectory.decoded_steps() if s.x0_uncond is not None]
    if not steps:
        return []
    (folder / "x0_uncond").mkdir(parents=True, exist_ok=True)
    (folder / "x0_cond").mkdir(parents=True, exist_ok=True)
    written = []
    for step in steps:
        for sub, frame in zip(("x0_uncond", "x0_cond"), guidance_frames(previewer, step)):
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
    from sdviz.explain import distance_to_final

    if trajectory.steps and trajectory.distance_to_final is None:
        distance_to_final(trajectory, decode)
    complete = trajectory.with_frames(decode)
    written = export_all(complete, folder, previewer=previewer)
    if trajectory.attention is not None:
        from sdviz.attention import write_overlays

        write_overlays(complete, Path(folder) / "attention")
    from sdviz import edit

    if previewer is not None and edit.is_edit(trajectory):  # the source's chain, the edit's and their difference
        written["edit"] = Path(folder) / "edit.png"
        edit.sheet(complete, previewer, decode).save(written["edit"])
    if page:
        from sdviz.page import write_page

        written["html"] = write_page(complete, Path(folder) / "run.html", decode, previewer,
                                     previewer.model.latent_rgb if previewer is not None else None)
    return written
