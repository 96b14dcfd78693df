"""A run as one self-contained HTML page (`run.html`) that replays it with no server, no network, no GPU.

The page holds everything inline: the frames as WebP data URIs (scaled down to PAGE_SIDE pixels high
at most), the per-word attention maps as small arrays (at most HEAT_SIDE a side, one byte a value),
the numbers (the path's points among them: every step in one plane, `sdviz.analysis.path`, drawn as
inline SVG), and its own plain script and style. The run's data sits in a JSON block that the script
parses; every text from the run (prompt, tokens, settings) reaches the page as text (`textContent`),
and images only as `data:image/` URIs, so nothing in a run can become code in the page.

    page = run_page(trajectory, previewer)              # the HTML, as a string
    write_page(trajectory, "run.html", previewer)
    comparison_page(comparison)                         # the variants side by side, one shared slider
"""

from __future__ import annotations

import base64
import functools
import html
import json
import re
from pathlib import Path

import numpy as np

from sdviz.analysis.align import ALIGNMENTS, at, positions
from sdviz.analysis.distance import settled_step
from sdviz.analysis.path import trajectory_map
from sdviz.drawing.sheets import pick
from sdviz.drawing.uri import data_uri
from sdviz.drawing.views import noise_image
from sdviz.messages import current, text
from sdviz.sampling.errors import InputError
from sdviz.sampling.tokens import shown

PAGE_SIDE = 256  # frames higher than this are scaled down to it (the page enlarges small ones, pixelated)
LOSSLESS_SIDE = 128  # frames up to this high are stored lossless (WebP), pixel for pixel; larger ones lossy
HEAT_SIDE = 32  # attention maps finer than this are averaged down to it
FILMSTRIP = 10  # thumbnails in the page's filmstrip
PAGE_WORDS = ("diagram.text", "page.token_embeddings", "page.latents", "page.decoder", "page.image", "filmstrip.noise",
              "filmstrip.step", "page.padding", "page.heat_note", "page.no_heat", "explore.x0", "page.distance_note",
              "page.settles", "page.step_label", "page.axis_noise", "page.axis_image", "page.not_run",
              "page.variant_step", "page.position", "sentence.gap", "page.map_axis", "page.map_umap_axis",
              "page.map_start", "page.versus", "page.threshold", "page.parts_at",
              "page.never_parts")  # what the pages' scripts write
_MARKER = re.compile(r"{{([\w.]+)}}")  # a catalogue key in a page's template
SETTING_WORDS = {"model": "run.model", "scheduler": "run.scheduler", "steps": "run.steps", "guidance": "run.guidance",
                 "true_cfg": "run.true_cfg", "seed": "run.seed", "width": "run.width", "height": "run.height",
                 "eta": "run.eta", "preview": "run.preview", "negative_prompt": "run.negative"}  # the table's names
INLINE_BYTES = 4_000_000  # a page shown inline (a notebook's output) is at most this, its frames made smaller
INLINE_SIDES = (PAGE_SIDE, 128, 64)  # ... to the first of these sides that keeps it within
FRAME_HEIGHT = 820  # pixels: the frame an inline page is shown in (it scrolls inside)
POSITIONS = 101  # a comparison's shared slider: 0..100 % of the way from the noise to the image


def image_uri(frame: np.ndarray, side: int = PAGE_SIDE) -> str:
    """A uint8 (H, W, 3) frame as a WebP data URI, no higher than `side`: lossless up to LOSSLESS_SIDE."""
    return data_uri(frame, side, LOSSLESS_SIDE)


def _noise_frame(noise: np.ndarray, latent_rgb, size: tuple[int, int]) -> np.ndarray:
    """The predicted noise as a picture: through the model's latent-to-RGB map when given, else its first
    three channels, standardised."""
    if latent_rgb is None:
        channels = noise.shape[0]
        latent_rgb = np.zeros((channels + 1, 3), np.float32)
        for c in range(min(3, channels)):
            latent_rgb[c, c] = 1.0
    return noise_image(noise, latent_rgb, size)


def _pool(maps: np.ndarray, side: int) -> np.ndarray:
    """(..., h, w) averaged over whole blocks down to at most `side` a side."""
    h, w = maps.shape[-2:]
    factor = max(1, -(-max(h, w) // side))
    while h % factor or w % factor:
        factor += 1
    return maps.reshape(*maps.shape[:-2], h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def _heat(traj, indices: list[int]) -> dict | None:
    """The prompt's words' attention, per shown step: {'words', 'size': [h, w], 'maps': base64 uint8
    (steps, words, h, w)}, each map min-max normalised as DAAM draws it."""
    maps = traj.attention
    if maps is None or not maps.word_slots():
        return None
    slots = maps.word_slots()
    rows = []
    for index in indices:
        if index not in maps.steps:
            return None
        step = _pool(maps.aggregate(steps=index)[slots], HEAT_SIDE)  # (words, h, w)
        low = step.min(axis=(1, 2), keepdims=True)
        high = step.max(axis=(1, 2), keepdims=True)
        rows.append(((step - low) / (high - low + 1e-8) * 255).round().astype(np.uint8))
    stacked = np.stack(rows)  # (steps, words, h, w)
    return {"words": [shown(maps.tokens[i]) for i in slots], "size": list(stacked.shape[2:]),
            "maps": base64.b64encode(stacked.tobytes()).decode()}


def run_data(traj, previewer=None, guidance: dict | None = None, side: int = PAGE_SIDE) -> dict:
    """What the page shows of a run, as JSON-ready values. The run's `previewer` decodes again the steps
    whose frames are not kept (without it only the kept ones are shown), the guidance halves' x0 (else they
    come from `guidance`, step index -> (x0_uncond frame, x0_cond frame), or are left out) and, through its
    model's latent-to-RGB map, the predicted noise (else its first three channels). Frames are no higher
    than `side` pixels."""
    indices = [i for i, s in enumerate(traj.steps) if previewer is not None or s.x_t_image is not None
               or (traj.frame_cache is not None and traj.frame_cache.get(i) is not None)]
    if not indices:
        raise InputError.said("error.page_no_decoded")
    size = tuple(traj.shapes["image"][1:])
    latent_rgb = previewer.model.latent_rgb if previewer is not None else None
    steps = []
    for index in indices:
        record = traj.steps[index]
        x_t, x0 = traj.step_frames(index, previewer)
        step = {"index": index, "timestep": float(record.timestep), "sigma": float(record.sigma),
                "x_t": image_uri(x_t, side), "x0": image_uri(x0, side)}
        if record.noise_pred is not None:
            step["noise"] = image_uri(_noise_frame(record.noise_pred, latent_rgb, size), side)
        halves = guidance.get(index) if guidance else None
        if halves is None and previewer is not None and record.x0_uncond is not None:
            halves = previewer.guidance_frames(record)
        if halves is not None:
            step["x0_uncond"], step["x0_cond"] = image_uri(halves[0], side), image_uri(halves[1], side)
        steps.append(step)
    settings = traj.settings
    listed = ("model", "scheduler", "steps", "guidance", "true_cfg", "seed", "width", "height", "eta", "preview",
              "negative_prompt")
    distances = traj.distance_to_final
    if distances is not None:
        settled = settled_step(distances["x0"])
        distances = {"x0": [distances["x0"][i] for i in indices], "x_t": [distances["x_t"][i] for i in indices],
                     "settled": None if settled is None else settled + 1}
    return {
        "prompt": settings.prompt,
        "settings": [[text(SETTING_WORDS[name]), str(getattr(settings, name))] for name in listed
                     if name != "true_cfg" or settings.true_cfg != 1]
                    + ([[text("run.strength"), str(settings.strength)]] if settings.img2img else []),
        "shapes": traj.shapes, "total": len(traj.steps), "complete": bool(traj.complete),
        "denoiser": text("diagram.transformer" if traj.facts.denoiser == "transformer" else "diagram.unet"),
        "prediction": text(f"prediction.{traj.facts.prediction_type}"),
        "noise": image_uri(traj.noise_image, side) if traj.noise_image is not None else None,
        "final": image_uri(traj.final_image, side) if traj.final_image is not None else None,
        "slots": [[shown(slot["token"]), slot["kind"]] for slot in traj.tokens["slots"]
                  if slot["kind"] != "padding"],
        "padding": sum(1 for slot in traj.tokens["slots"] if slot["kind"] == "padding"),
        "steps": steps, "filmstrip": pick(len(steps), FILMSTRIP),
        "heat": _heat(traj, indices), "distance": distances,
        "map": _run_map(traj),
    }


def _rounded(points: np.ndarray) -> list:
    return np.round(points.astype(np.float64), 4).tolist()


def _run_map(traj) -> dict | None:
    """The run's path in the plane of its own steps (`trajectory_map`): its start and x_t after each step
    (steps + 1 points), each step's x0, each axis's share of the variance; None for a run with no steps."""
    if not traj.steps:
        return None
    mapped = trajectory_map([traj])
    return {"points": _rounded(mapped.points[0]), "x0_points": _rounded(mapped.x0_points[0]),
            "explained": mapped.explained}


def _comparison_path(comparison) -> tuple[dict | None, list[dict]]:
    """The variants that ran in one plane ({"explained", "runs": [{"variant", "points", "x0_points"}]}, or None),
    and where each parts from the first (`Comparison.partings`)."""
    ran = comparison.ran_map()
    mapped = None if ran is None else {
        "explained": ran[1].explained,
        "runs": [{"variant": k, "points": _rounded(points), "x0_points": _rounded(x0)}
                 for k, points, x0 in zip(ran[0], ran[1].points, ran[1].x0_points)]}
    return mapped, comparison.partings()


def run_page(traj, previewer=None, guidance: dict | None = None, side: int = PAGE_SIDE) -> str:
    data = run_data(traj, previewer, guidance, side)
    title = f"sdviz run: {data['prompt'][:80]}"
    return _page(title, data, "run")


def comparison_page(comparison, side: int = PAGE_SIDE) -> str:
    """The variants side by side: each one's x_t and x0 at one shared slider, lined up by progress or by
    noise level (the page switches), their distance curves, their paths in one plane, where each parts from
    the first, and the final images."""
    variants = []
    for traj, previewer, label in zip(comparison.trajectories, comparison.previewers, comparison.labels):
        frames = [traj.step_frames(i, previewer) for i in range(len(traj.steps))]
        distances = traj.distance_to_final
        variants.append({
            "label": label, "total": len(traj.steps),
            "steps": [{"sigma": float(s.sigma), "x_t": image_uri(x_t, side), "x0": image_uri(x0, side)}
                      for s, (x_t, x0) in zip(traj.steps, frames)],
            "final": image_uri(traj.final_image, side) if traj.final_image is not None else None,
            "distance": distances["x0"] if distances else None,
        })
    data = {
        "prompt": comparison.trajectories[0].settings.prompt if comparison.trajectories else "",
        "variants": variants, "by": comparison.by,
        "at": {by: [at(comparison.trajectories, k / (POSITIONS - 1), by) for k in range(POSITIONS)]
               for by in ALIGNMENTS},
        "positions": {by: positions(comparison.trajectories, by) for by in ALIGNMENTS},
    }
    data["map"], data["parting"] = _comparison_path(comparison)
    return _page(f"sdviz comparison: {data['prompt'][:80]}", data, "comparison")


def bounded(build, most: int = INLINE_BYTES) -> str:
    """The page `build(side)` makes at the largest side of INLINE_SIDES whose page is no more than `most` bytes
    (else at the smallest): a page shown inside another (a notebook's output) stays of bounded size."""
    for side in INLINE_SIDES:
        page = build(side)
        if len(page.encode()) <= most:
            break
    return page


def framed(page: str, title: str, height: int = FRAME_HEIGHT) -> str:
    """The page inside a frame of its own, to show within another page (a notebook's output): `srcdoc` holds it
    whole (no network) and `sandbox="allow-scripts"` runs its script in an origin of its own, which cannot
    reach the page around it."""
    return (f'<iframe sandbox="allow-scripts" title="{html.escape(title)}" srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:{height}px;border:1px solid #ddd;border-radius:4px"></iframe>')


def write_page(traj, path, previewer=None) -> Path:
    path = Path(path)
    path.write_text(run_page(traj, previewer), encoding="utf-8")
    return path


def _page(title: str, data: dict, kind: str) -> str:
    """The page: style, the data as JSON (no '<' inside, so no markup can end its block), and the script."""
    data = {**data, "words": {key: text(key) for key in PAGE_WORDS}}  # the script's words, in the language
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
    payload = payload.replace("&", "\\u0026")
    body = _MARKER.sub(lambda match: html.escape(text(match.group(1))), _template(f"{kind}.html"))
    return (f'<!DOCTYPE html>\n<html lang="{current()}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            f"style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title><style>{_template('page.css')}</style></head>\n<body>{body}\n"
            f'<script type="application/json" id="sdviz-data">{payload}</script>\n'
            f"<script>{_template('common.js')}{_template(f'{kind}.js')}</script>\n</body></html>\n")


@functools.cache
def _template(name: str) -> str:
    """A file of the page (its style, bodies and scripts), shipped in sdviz/drawing/templates."""
    return (Path(__file__).parent / "templates" / name).read_text(encoding="utf-8")
