"""A run as one self-contained HTML page (`run.html`) that replays it with no server, no network, no GPU.

The page holds everything inline: the frames as WebP data URIs (scaled down to PAGE_SIDE pixels high
at most), the per-word attention maps as small arrays (at most HEAT_SIDE a side, one byte a value),
the numbers, and its own plain script and style. The run's data sits in a JSON block that the script
parses; every text from the run (prompt, tokens, settings) reaches the page as text (`textContent`),
and images only as `data:image/` URIs, so nothing in a run can become code in the page.

    page = run_page(trajectory, decode, previewer)      # the HTML, as a string
    write_page(trajectory, "run.html", decode, previewer)
    comparison_page(comparison)                         # the variants side by side, one shared slider
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from sdviz.tokens import shown

PAGE_SIDE = 256  # frames higher than this are scaled down to it (the page enlarges small ones, pixelated)
LOSSLESS_SIDE = 128  # frames up to this high are stored lossless (WebP), pixel for pixel; larger ones lossy
WEBP_QUALITY = 75  # lossy WebP for the larger frames
HEAT_SIDE = 32  # attention maps finer than this are averaged down to it
FILMSTRIP = 10  # thumbnails in the page's filmstrip
POSITIONS = 101  # a comparison's shared slider: 0..100 % of the way from the noise to the image


def image_uri(frame: np.ndarray, side: int = PAGE_SIDE) -> str:
    """A uint8 (H, W, 3) frame as a WebP data URI, no higher than `side`: lossless up to LOSSLESS_SIDE."""
    from PIL import Image

    image = Image.fromarray(frame)
    if frame.shape[0] > side:
        image = image.resize((max(1, side * frame.shape[1] // frame.shape[0]), side), Image.Resampling.BILINEAR,
                             reducing_gap=2.0)
    buffer = io.BytesIO()
    if image.height <= LOSSLESS_SIDE:
        image.save(buffer, format="WEBP", lossless=True, quality=0, method=1)  # fastest effort: as small here
    else:
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode()


def _noise_frame(noise: np.ndarray, latent_rgb, size: tuple[int, int]) -> np.ndarray:
    """The predicted noise as a picture: through the model's latent-to-RGB map when given, else its first
    three channels, standardised."""
    from sdviz.views import noise_image

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


def run_data(traj, decode=None, previewer=None, latent_rgb=None, guidance: dict | None = None) -> dict:
    """What the page shows of a run, as JSON-ready values. decode(record, alone) decodes steps whose frames
    are not kept (without it only the decoded steps are shown); the guidance halves' x0 come from the
    run's previewer, or from `guidance` (step index -> (x0_uncond frame, x0_cond frame)), else are left
    out; latent_rgb (the model's) draws the predicted noise."""
    from sdviz.explain import guidance_frames
    from sdviz.export import pick

    indices = [i for i, s in enumerate(traj.steps) if decode is not None or s.x_t_image is not None
               or (traj.frame_cache is not None and traj.frame_cache.get(i) is not None)]
    if not indices:
        raise ValueError("the run has no decoded steps to show; pass its decoder to decode them")
    size = tuple(traj.shapes["image"][1:])
    steps = []
    for index in indices:
        record = traj.steps[index]
        x_t, x0 = traj.step_frames(index, decode)
        step = {"index": index, "timestep": float(record.timestep), "sigma": float(record.sigma),
                "x_t": image_uri(x_t), "x0": image_uri(x0)}
        if record.noise_pred is not None:
            step["noise"] = image_uri(_noise_frame(record.noise_pred, latent_rgb, size))
        halves = guidance.get(index) if guidance else None
        if halves is None and previewer is not None and record.x0_uncond is not None:
            halves = guidance_frames(previewer, record)
        if halves is not None:
            step["x0_uncond"], step["x0_cond"] = image_uri(halves[0]), image_uri(halves[1])
        steps.append(step)
    settings = traj.settings
    listed = ("model", "scheduler", "steps", "guidance", "true_cfg", "seed", "width", "height", "eta", "preview",
              "negative_prompt")
    distances = traj.distance_to_final
    if distances is not None:
        from sdviz.explain import settled_step

        settled = settled_step(distances["x0"])
        distances = {"x0": [distances["x0"][i] for i in indices], "x_t": [distances["x_t"][i] for i in indices],
                     "settled": None if settled is None else settled + 1}
    return {
        "prompt": settings.prompt,
        "settings": [[name, str(getattr(settings, name))] for name in listed if name != "true_cfg" or settings.true_cfg != 1]
                    + ([["strength", str(settings.strength)]] if settings.img2img else []),
        "shapes": traj.shapes, "total": len(traj.steps), "complete": bool(traj.complete),
        "denoiser": f"{traj.denoiser_word[0].upper()}{traj.denoiser_word[1:]} + scheduler",
        "prediction": traj.prediction_label,
        "noise": image_uri(traj.noise_image) if traj.noise_image is not None else None,
        "final": image_uri(traj.final_image) if traj.final_image is not None else None,
        "slots": [[shown(slot["token"]), slot["kind"]] for slot in traj.tokens["slots"]
                  if slot["kind"] != "padding"],
        "padding": sum(1 for slot in traj.tokens["slots"] if slot["kind"] == "padding"),
        "steps": steps, "filmstrip": pick(len(steps), FILMSTRIP),
        "heat": _heat(traj, indices), "distance": distances,
    }


def run_page(traj, decode=None, previewer=None, latent_rgb=None, guidance: dict | None = None) -> str:
    data = run_data(traj, decode, previewer, latent_rgb, guidance)
    title = f"sdviz run: {data['prompt'][:80]}"
    return _page(title, data, "run")


def comparison_page(comparison) -> str:
    """The variants side by side: each one's x_t and x0 at one shared slider, lined up by progress or by
    noise level (the page switches), their distance curves, and the final images."""
    from sdviz.comparison import ALIGNMENTS, at, positions

    variants = []
    for traj, decode, label in zip(comparison.trajectories, comparison.decoders, comparison.labels):
        frames = [traj.step_frames(i, decode) for i in range(len(traj.steps))]
        distances = traj.distance_to_final
        variants.append({
            "label": label, "total": len(traj.steps),
            "steps": [{"sigma": float(s.sigma), "x_t": image_uri(x_t), "x0": image_uri(x0)}
                      for s, (x_t, x0) in zip(traj.steps, frames)],
            "final": image_uri(traj.final_image) if traj.final_image is not None else None,
            "distance": distances["x0"] if distances else None,
        })
    data = {
        "prompt": comparison.trajectories[0].settings.prompt if comparison.trajectories else "",
        "variants": variants, "by": comparison.by,
        "at": {by: [at(comparison.trajectories, k / (POSITIONS - 1), by) for k in range(POSITIONS)]
               for by in ALIGNMENTS},
        "positions": {by: positions(comparison.trajectories, by) for by in ALIGNMENTS},
    }
    return _page(f"sdviz comparison: {data['prompt'][:80]}", data, "comparison")


def write_page(traj, path, decode=None, previewer=None, latent_rgb=None) -> Path:
    path = Path(path)
    path.write_text(run_page(traj, decode, previewer, latent_rgb), encoding="utf-8")
    return path


def _page(title: str, data: dict, kind: str) -> str:
    """The page: style, the data as JSON (no '<' inside, so no markup can end its block), and the script."""
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
    payload = payload.replace("&", "\\u0026")
    body = RUN_BODY if kind == "run" else COMPARISON_BODY
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            f"style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>{body}\n"
            f'<script type="application/json" id="sdviz-data">{payload}</script>\n'
            f"<script>{COMMON_SCRIPT}{RUN_SCRIPT if kind == 'run' else COMPARISON_SCRIPT}</script>\n</body></html>\n")


STYLE = """
body {font-family: system-ui, sans-serif; margin: 16px auto; max-width: 1100px; color: #222; padding: 0 12px}
h1 {font-size: 20px; margin: 0 0 4px 0; overflow-wrap: anywhere}
h2 {font-size: 16px; margin: 18px 0 6px 0}
.note {font-size: 13px; color: #555}
.diagram {display: flex; gap: 6px; flex-wrap: wrap; font-size: 13px; margin: 10px 0}
.box {flex: 1; min-width: 150px; border-radius: 8px; padding: 6px 10px}
.box b {display: block} .box code {font-size: 15px; font-weight: bold}
.text {background: #d8ecfa} .unet {background: #fadbe8} .vae {background: #fdf2c9}
.arrow {align-self: center; font-size: 20px}
.row {display: flex; gap: 10px; flex-wrap: wrap; align-items: flex-start}
figure {margin: 0; text-align: center; font-size: 12px; font-family: monospace}
.frames img, .frames canvas {width: 220px; height: 220px; object-fit: contain; image-rendering: pixelated;
  background: #f2f2f2; border-radius: 6px; display: block}
.stack {position: relative; width: 220px; height: 220px}
.stack canvas {position: absolute; left: 0; top: 0; image-rendering: auto; background: none}
.strip {display: flex; gap: 4px; overflow-x: auto}
.strip img {width: 72px; height: 72px; image-rendering: pixelated; cursor: pointer; display: block}
.strip figure.on img {outline: 3px solid #d0508a}
.controls {display: flex; gap: 10px; align-items: center; margin: 10px 0; font-family: monospace}
.controls input[type=range] {flex: 1}
.chips {display: flex; flex-wrap: wrap; gap: 3px; font-family: monospace; font-size: 12px}
.chips span {padding: 2px 6px; border-radius: 4px; border: 1px solid #bbb}
.chips .start, .chips .end {background: #222; color: #fff}
.chips .word {background: #d8ecfa; cursor: pointer}
.chips .word.on {background: #d0508a; color: #fff}
table {border-collapse: collapse; font-size: 13px} td {border: 1px solid #ccc; padding: 2px 8px}
svg text {font-size: 11px; font-family: system-ui, sans-serif}
.variants {display: grid; gap: 8px; grid-template-columns: repeat(auto-fill, minmax(150px, 200px))}
.variants img {width: 100%; aspect-ratio: 1; object-fit: contain; image-rendering: pixelated; background: #f2f2f2;
  border-radius: 6px; display: block; margin-top: 3px}
.variants .label {font-weight: bold; overflow-wrap: anywhere; min-height: 2.6em}
"""

RUN_BODY = """
<h1 id="prompt"></h1>
<div class="note">A diffusion run replayed from its trajectory: every step's decoded latents x_t, the clean image
x0 the model predicts at that step, and the noise it predicts. Written by sdviz; it needs no server or network.</div>
<div class="diagram" id="diagram"></div>
<h2>From noise to image</h2>
<div class="strip" id="filmstrip"></div>
<div class="controls"><button id="play">&#9654; play</button>
<input type="range" id="slider" min="0" max="0" value="0" aria-label="step"><span id="step-label"></span></div>
<div class="row frames">
 <figure><img id="x_t" alt="x_t"><figcaption>x_t (decoded latents)</figcaption></figure>
 <figure><div class="stack"><img id="x0" alt="predicted x0"><canvas id="heat"></canvas></div>
  <figcaption id="x0-caption">predicted x0</figcaption></figure>
 <figure id="noise-figure"><img id="noise" alt="predicted noise"><figcaption id="noise-caption">predicted noise</figcaption></figure>
</div>
<section id="tokens-section"><h2>The prompt's tokens</h2><div class="note" id="heat-note"></div>
<div class="chips" id="chips"></div></section>
<section id="guidance-section"><h2>Guidance, decomposed</h2>
<div class="note">x0 from the empty (negative) prompt and from the prompt; guidance pushes the second away from the
first by the guidance scale.</div>
<div class="row frames"><figure><img id="x0_uncond" alt="x0 uncond"><figcaption>x0 from the empty prompt</figcaption></figure>
<figure><img id="x0_cond" alt="x0 cond"><figcaption>x0 from the prompt</figcaption></figure></div></section>
<section id="distance-section"><h2>Where the picture is decided</h2><div class="note" id="distance-note"></div>
<svg id="distance" width="640" height="200" role="img" aria-label="distance to the final image"></svg></section>
<h2>Settings</h2><table id="settings"></table>
"""

COMPARISON_BODY = """
<h1 id="prompt"></h1>
<div class="note">One seed through several settings, side by side. Written by sdviz; it needs no server or network.</div>
<div class="controls"><label>line up by <select id="by"><option value="progress">progress</option>
<option value="sigma">sigma</option></select></label>
<input type="range" id="slider" min="0" max="100" value="100" aria-label="position"><span id="step-label"></span></div>
<div class="variants" id="variants"></div>
<h2>Distance of each variant's predicted x0 to its final image</h2>
<svg id="distance" width="640" height="220" role="img" aria-label="distance curves"></svg>
<h2>Final images</h2><div class="variants" id="finals"></div>
"""

COMMON_SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("sdviz-data").textContent);
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls; return e; }
function picture(img, uri) { img.src = (typeof uri === "string" && uri.startsWith("data:image/")) ? uri : ""; }
const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) { const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }
function curves(box, series, marker) {
  // series: [{name, colour, points: [[x in 0..1, y]]}]; returns a function that moves the marker to x in 0..1
  const W = +box.getAttribute("width"), H = +box.getAttribute("height"), L = 44, B = 24, T = 8;
  const ys = series.flatMap(s => s.points.map(p => p[1])); const top = Math.max(...ys, 1e-6);
  const X = x => L + x * (W - L - 8), Y = y => T + (1 - y / top) * (H - T - B);
  box.appendChild(svg("line", {x1: L, y1: H - B, x2: W - 8, y2: H - B, stroke: "#999"}));
  box.appendChild(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#999"}));
  const label = (x, y, text, anchor) => { const t = svg("text", {x: x, y: y, "text-anchor": anchor}); t.textContent = text;
    box.appendChild(t); };
  label(L - 4, T + 8, top.toFixed(3), "end"); label(L - 4, H - B, "0", "end");
  label(L, H - 6, "noise", "start"); label(W - 8, H - 6, "image", "end");
  series.forEach((s, k) => {
    box.appendChild(svg("polyline", {points: s.points.map(p => X(p[0]) + "," + Y(p[1])).join(" "), fill: "none",
      stroke: s.colour, "stroke-width": 2}));
    label(W - 10, T + 12 + 13 * k, s.name, "end"); box.lastChild.setAttribute("fill", s.colour);
  });
  const mark = svg("line", {y1: T, y2: H - B, stroke: "#000", "stroke-dasharray": "3 3"}); box.appendChild(mark);
  return x => { mark.setAttribute("x1", X(x)); mark.setAttribute("x2", X(x)); };
}
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
document.getElementById("prompt").textContent = DATA.prompt || "(no prompt)";
"""

RUN_SCRIPT = r"""
const steps = DATA.steps, slider = document.getElementById("slider");
document.getElementById("noise-caption").textContent = DATA.prediction || "predicted noise";
slider.max = steps.length - 1; slider.value = steps.length - 1;
const shape = s => s.join(" × ");
[["text", "Text encoder", "token embeddings", DATA.shapes.token_embeddings],
 ["unet", DATA.denoiser || "UNet + scheduler", "latents", DATA.shapes.latents],
 ["vae", "Image decoder (VAE)", "image", DATA.shapes.image]].forEach(([cls, name, what, dims], k) => {
  const box = el("div", undefined, "box " + cls); box.appendChild(el("b", name)); box.appendChild(el("code", shape(dims)));
  box.appendChild(el("div", what)); const diagram = document.getElementById("diagram");
  if (k) diagram.appendChild(el("div", "→", "arrow")); diagram.appendChild(box); });
const strip = document.getElementById("filmstrip"), thumbs = [];
if (DATA.noise) { const f = el("figure"); const img = el("img"); picture(img, DATA.noise); f.appendChild(img);
  f.appendChild(el("figcaption", "noise")); strip.appendChild(f); }
DATA.filmstrip.forEach(k => { const f = el("figure"); const img = el("img"); picture(img, steps[k].x_t);
  f.appendChild(img); f.appendChild(el("figcaption", "step " + (steps[k].index + 1))); f.dataset.k = k;
  f.addEventListener("click", () => { slider.value = k; show(); }); strip.appendChild(f); thumbs.push(f); });
const table = document.getElementById("settings");
DATA.settings.forEach(([name, value]) => { const tr = el("tr"); tr.appendChild(el("td", name)); tr.appendChild(el("td", value));
  table.appendChild(tr); });
const chips = document.getElementById("chips"), heat = DATA.heat, canvas = document.getElementById("heat");
let word = -1;
DATA.slots.forEach(([token, kind]) => chips.appendChild(el("span", token, kind)));
if (DATA.padding) chips.appendChild(el("span", "+ " + DATA.padding + " padding"));
const words = Array.from(chips.querySelectorAll(".word"));
words.forEach((chip, w) => chip.addEventListener("click", () => { word = word === w ? -1 : w; show(); }));
const mapBytes = heat ? Uint8Array.from(atob(heat.maps), c => c.charCodeAt(0)) : null;
document.getElementById("heat-note").textContent = heat ? "Click a word: where the UNet's cross-attention put it at " +
  "this step (DAAM), over the predicted x0." : "This run kept no attention maps.";
const JET = [[0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]];
function drawHeat(k) {
  const on = heat && word >= 0; canvas.style.display = on ? "block" : "none";
  words.forEach((chip, w) => chip.classList.toggle("on", w === word));
  if (!on) return;
  const [h, w] = heat.size, size = h * w, offset = (k * heat.words.length + word) * size;
  canvas.width = w; canvas.height = h; const ctx = canvas.getContext("2d"), image = ctx.createImageData(w, h);
  for (let i = 0; i < size; i++) {
    const v = mapBytes[offset + i] / 255, p = v * (JET.length - 1), lo = Math.min(Math.floor(p), JET.length - 2), f = p - lo;
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = JET[lo][c] * (1 - f) + JET[lo + 1][c] * f;
    image.data[4 * i + 3] = 255 * 0.55 * (0.35 + 0.65 * v);
  }
  ctx.putImageData(image, 0, 0);
}
const noiseFigure = document.getElementById("noise-figure");
const guided = steps.some(s => s.x0_uncond);
document.getElementById("guidance-section").style.display = guided ? "" : "none";
let moveMark = null;
if (DATA.distance) {
  const d = DATA.distance, xs = steps.map((s, k) => k / Math.max(steps.length - 1, 1));
  moveMark = curves(document.getElementById("distance"), [
    {name: "predicted x0", colour: "#d62728", points: d.x0.map((y, k) => [xs[k], y])},
    {name: "x_t", colour: "#1f77b4", points: d.x_t.map((y, k) => [xs[k], y])}]);
  document.getElementById("distance-note").textContent = "Mean absolute pixel difference of each step's frames to " +
    "the final image. " + (d.settled ? "The layout settles at step " + d.settled + " of " + DATA.total +
    ": from there the predicted x0 stays within 0.05 of the final image." : "");
} else document.getElementById("distance-section").style.display = "none";
function show() {
  const k = +slider.value, s = steps[k];
  picture(document.getElementById("x_t"), s.x_t); picture(document.getElementById("x0"), s.x0);
  noiseFigure.style.display = s.noise ? "" : "none"; if (s.noise) picture(document.getElementById("noise"), s.noise);
  if (guided) { picture(document.getElementById("x0_uncond"), s.x0_uncond); picture(document.getElementById("x0_cond"), s.x0_cond); }
  document.getElementById("step-label").textContent = "step " + (s.index + 1) + " / " + DATA.total + " · timestep " +
    (+s.timestep.toFixed(2)) + " · σ " + s.sigma.toFixed(4);
  thumbs.forEach(f => f.classList.toggle("on", +f.dataset.k === k));
  drawHeat(k); if (moveMark) moveMark(k / Math.max(steps.length - 1, 1));
}
let timer = null;
document.getElementById("play").addEventListener("click", () => {
  if (timer) { clearInterval(timer); timer = null; return; }
  if (+slider.value === steps.length - 1) slider.value = 0;
  timer = setInterval(() => { if (+slider.value >= steps.length - 1) { clearInterval(timer); timer = null; return; }
    slider.value = +slider.value + 1; show(); }, 250);
});
slider.addEventListener("input", show);
show();
"""

COMPARISON_SCRIPT = r"""
const variants = DATA.variants, slider = document.getElementById("slider"), by = document.getElementById("by");
by.value = DATA.by;
const columns = variants.map((v, n) => {
  const f = el("figure"); f.appendChild(el("div", (n + 1) + ": " + v.label, "label"));
  const xt = el("img"), x0 = el("img"); xt.alt = "x_t"; x0.alt = "predicted x0"; f.appendChild(xt); f.appendChild(x0);
  const cap = el("figcaption"); f.appendChild(cap); document.getElementById("variants").appendChild(f);
  const g = el("figure"); g.appendChild(el("div", (n + 1) + ": " + v.label, "label")); const fin = el("img");
  picture(fin, v.final); g.appendChild(fin); document.getElementById("finals").appendChild(g);
  return {xt, x0, cap};
});
let moveMark = () => {};
function plot() {
  const box = document.getElementById("distance"); while (box.firstChild) box.removeChild(box.firstChild);
  moveMark = curves(box, variants.map((v, n) => ({name: (n + 1) + ": " + v.label, colour: COLOURS[n % COLOURS.length],
    points: (v.distance || []).map((y, k) => [DATA.positions[by.value][n][k], y])})));
}
function show() {
  const p = +slider.value, indices = DATA.at[by.value][p];
  variants.forEach((v, n) => { const k = indices[n], c = columns[n];
    if (k === null) { c.cap.textContent = "not run"; return; }
    picture(c.xt, v.steps[k].x_t); picture(c.x0, v.steps[k].x0);
    c.cap.textContent = "step " + (k + 1) + "/" + v.total + " · σ " + (+v.steps[k].sigma.toPrecision(3)); });
  document.getElementById("step-label").textContent = p + "% of the way, by " + by.value;
  moveMark(p / 100);
}
slider.addEventListener("input", show);
by.addEventListener("change", () => { plot(); show(); });
plot(); show();
"""
