"""Sheets and animations of a trajectory: the filmstrip, rows of frames, animated GIF and MP4.

The filmstrip follows *The Illustrated Stable Diffusion*: decoded latents in a
row from noise to image, each with its step number; with many steps a readable
selection (always the noise and the last step). GIF and MP4 go through imageio
(MP4 with the ffmpeg binary that imageio-ffmpeg ships).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sdviz.analysis.metrics import psnr
from sdviz.drawing.fonts import text_font
from sdviz.messages import text
from sdviz.sampling.errors import InputError

MIN_VIDEO_SIDE = 256  # small frames are enlarged (nearest neighbour) to at least this
FILMSTRIP_FRAMES = 10  # at most this many frames per row
FILMSTRIP_SIDE = 128  # frames in the filmstrip are scaled to this height at least
MAX_ENLARGED_PIXELS = 2**20  # an enlarged frame (GIF, MP4, views) has at most this many pixels
MAX_TILE_PIXELS = 2**16  # a frame's tile in a sheet has at most this many pixels (256 x 256)


def pick(count: int, most: int) -> list[int]:
    """Up to `most` indices from 0..count-1, evenly spread, always the first and the last."""
    if count <= most:
        return list(range(count))
    return sorted({round(k * (count - 1) / (most - 1)) for k in range(most)})


def step_file(index: int, count: int) -> str:
    """NNN.png for step `index` of `count`: zero-padded to at least 3 digits, so names sort in step order."""
    return f"{index:0{max(3, len(str(count - 1)))}d}.png"


def enlarge(frame: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so the short side is at least `side`, by no more than
    keeps the result within MAX_ENLARGED_PIXELS (a thin frame is not blown up by its short side)."""
    factor = enlarge_factor(frame.shape[:2], side)
    return frame.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else frame


def enlarge_factor(size: tuple[int, int], side: int) -> int:
    """The whole factor `enlarge` enlarges an (h, w) frame by."""
    return min(max(1, -(-side // min(size))), _most_factor(size, MAX_ENLARGED_PIXELS))


def _most_factor(size: tuple[int, int], pixels: int) -> int:
    """The largest whole factor that keeps a (h, w) frame within `pixels` pixels (1 at least)."""
    return max(1, math.isqrt(pixels // max(1, size[0] * size[1])))


def filmstrip(trajectory, most: int = FILMSTRIP_FRAMES, with_x0: bool = True):
    """A PIL image: the row of decoded x_t from noise to image, step numbers under each,
    and (with_x0) the predicted x0 of the same steps beneath."""
    x_t = trajectory.frames("x_t")
    chosen = pick(len(x_t), most)
    if not chosen:
        raise InputError.said("error.no_frames_to_draw")
    columns = [x_t[k] for k in chosen]
    rows = [(text("sheet.x_t"), [(_step_label(label), frame) for label, frame in columns])]
    if with_x0:
        x0 = dict(trajectory.frames("x0"))
        rows.append((text("sheet.x0"), [(_step_label(label), x0.get(label)) for label, _ in columns]))
    total = len(trajectory.steps) if trajectory.steps else 0
    return sheet(rows, text("sheet.denoising", steps=total, scheduler=trajectory.settings.scheduler))


def _step_label(label: str) -> str:
    return text("filmstrip.noise") if label == "noise" else text("filmstrip.step", step=label)


def sheet(rows: list[tuple[str, list[tuple[str, np.ndarray | None]]]], title: str = "",
          marked: dict[int, str] | None = None):
    """A PIL image of rows of frames: each row a label and (caption, frame or None) columns, captions
    under the frames, frames enlarged to FILMSTRIP_SIDE high at least (nearest neighbour, pixels kept);
    `marked` columns (index -> note) framed in red with the note above the first row."""
    from PIL import Image, ImageDraw

    sample = next((frame for _, columns in rows for _, frame in columns if frame is not None), None)
    if sample is None:
        raise InputError.said("error.sheet_empty")
    scale = min(max(1, -(-FILMSTRIP_SIDE // sample.shape[0])), _most_factor(sample.shape[:2], MAX_TILE_PIXELS))
    tile_h, tile_w = sample.shape[0] * scale, sample.shape[1] * scale
    gap, label_h = max(4, tile_w // 16), max(16, tile_h // 6)
    written = title + "".join(name + "".join(caption for caption, _ in columns) for name, columns in rows)
    font = text_font(max(11, label_h - 4), written + "".join((marked or {}).values()))
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
        raise InputError.said("error.no_frames_to_animate")
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


def round_trip_sheet(inversion, reconstruction, previewers, columns: int = 6):
    """The image to noise (above) and back (below), column by column at the same noise level: the
    inversion's latents after its step k, and the reconstruction's as they pass that level again.
    previewers: each run's preview decoder."""
    count = len(inversion.steps)
    if len(reconstruction.steps) != count:
        raise InputError.said("error.round_trip_steps", steps=len(reconstruction.steps), count=count)
    image, final = inversion.init_image, reconstruction.final_image
    there, back = [(text("sheet.image"), image)], [(text("sheet.image"), final)]
    for k in pick(count, columns):
        level = f"t {inversion.steps[k].timestep:g}"
        there.append((level, inversion.step_frames(k, previewers[0])[0]))
        j = count - 2 - k  # the reconstruction's step whose latents end at inversion step k's level
        back.append((level, reconstruction.noise_image if j < 0 else reconstruction.step_frames(j, previewers[1])[0]))
    title = text("sheet.inversion_title", psnr=f"{psnr(image, final):.1f}")
    return sheet([(text("sheet.inversion"), there), (text("sheet.reconstruction"), back)], title)
