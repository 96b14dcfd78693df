"""HTML for the app's drawn panels: the three-component diagram, the live status,
the filmstrip and the token slots. Plain strings from a trajectory; no gradio here.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from sdviz.export import enlarge, pick

FILMSTRIP_MOST = 24  # frames shown in the live filmstrip; more are thinned evenly
THUMB_SIDE = 96

CSS = """
.sdviz-diagram {display:flex; align-items:stretch; gap:6px; flex-wrap:wrap; font-size:14px}
.sdviz-box {flex:1; min-width:150px; border-radius:10px; padding:8px 10px; border:2px solid transparent; opacity:.75}
.sdviz-box h4 {margin:0 0 2px 0; font-size:15px}
.sdviz-box .cls {font-family:monospace; font-size:12px; opacity:.8}
.sdviz-box .shape {font-family:monospace; font-size:17px; font-weight:bold; margin-top:4px}
.sdviz-box.active {opacity:1; border-color:#222; box-shadow:0 0 10px rgba(0,0,0,.35)}
.sdviz-text {background:#d8ecfa; color:#103a5a} .sdviz-unet {background:#fadbe8; color:#5a1035}
.sdviz-vae {background:#fdf2c9; color:#5a4510} .sdviz-encode {background:#e3f5dd; color:#1f4a12}
.sdviz-arrow {align-self:center; font-size:22px}
.sdviz-status {font-family:monospace; font-size:15px}
.sdviz-bar {height:8px; background:#eee; border-radius:4px; overflow:hidden; margin-top:4px}
.sdviz-bar > div {height:100%; background:#d0508a}
.sdviz-filmstrip {display:flex; gap:6px; overflow-x:auto; padding:4px 0}
.sdviz-filmstrip figure {margin:0; text-align:center; font-size:12px; font-family:monospace; flex:0 0 auto}
.sdviz-filmstrip img {width:80px; height:80px; object-fit:contain; image-rendering:pixelated; display:block}
.sdviz-pixelated img {image-rendering:pixelated; width:100%; height:100%; object-fit:contain}
.sdviz-tokens {display:flex; flex-wrap:wrap; gap:3px; font-family:monospace; font-size:12px}
.sdviz-tokens span {padding:2px 5px; border-radius:4px; border:1px solid #bbb}
.sdviz-tokens .start, .sdviz-tokens .end {background:#222; color:#fff}
.sdviz-tokens .word {background:#d8ecfa; color:#103a5a; font-weight:bold}
.sdviz-tokens .padding {background:#f2f2f2; color:#999}
"""


def png_data_uri(image: np.ndarray, side: int = THUMB_SIDE) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    frame = image if image.shape[0] >= side else enlarge(image, side)
    if frame.shape[0] > side:
        frame = np.asarray(Image.fromarray(frame).resize((side * frame.shape[1] // frame.shape[0], side)))
    Image.fromarray(frame).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _shape(dims) -> str:
    return " × ".join(str(d) for d in dims)


def diagram(shapes: dict, facts: dict, active: str = "", scheduler: str = "", step: str = "",
            img2img: bool = False) -> str:
    """The Illustrated Stable Diffusion's three components with this model's real tensor shapes.

    active: 'text', 'encode', 'unet' or 'vae' highlights that component.
    """
    def box(kind: str, title: str, cls: str, shape: str, caption: str) -> str:
        state = " active" if kind == active else ""
        return (f'<div class="sdviz-box sdviz-{kind}{state}" data-component="{kind}"><h4>{title}</h4>'
                f'<div class="cls">{html.escape(cls)}</div><div class="shape">{shape}</div>'
                f"<div>{caption}</div></div>")

    tokens = _shape(shapes["token_embeddings"])
    latents = _shape(shapes["latents"])
    image = _shape(shapes["image"])
    parts = []
    if img2img:
        parts += [box("encode", "VAE encoder", "AutoencoderKL.encode", f"{image} → {latents}",
                      "input image to latents, noised to the strength"), '<div class="sdviz-arrow">→</div>']
    parts += [
        box("text", "Text encoder", "CLIPTextModel", tokens, "token embeddings (tokens × width)"),
        '<div class="sdviz-arrow">→</div>',
        box("unet", "UNet + scheduler", f"UNet2DConditionModel · {scheduler}", latents,
            f"latents (channels × h × w) {html.escape(step)}"),
        '<div class="sdviz-arrow">→</div>',
        box("vae", "Image decoder", "AutoencoderKL.decode", image, f"image (RGB × H × W), VAE factor {facts['vae_factor']}"),
    ]
    return '<div class="sdviz-diagram">' + "".join(parts) + "</div>"


def status(record=None, total: int = 0, note: str = "") -> str:
    if record is None:
        return f'<div class="sdviz-status" data-step="0">{html.escape(note) or "ready"}</div>'
    done = record.index + 1
    percent = 100 * done / max(total, 1)
    return (
        f'<div class="sdviz-status" data-step="{done}" data-total="{total}">'
        f"step {done} / {total} · timestep {record.timestep:g} · σ {record.sigma:.4f} "
        f"· {record.seconds * 1000:.0f} ms {html.escape(note)}"
        f'<div class="sdviz-bar"><div style="width:{percent:.1f}%"></div></div></div>'
    )


def filmstrip(trajectory, kind: str = "x_t") -> str:
    """The row of decoded frames from noise to image, each with its step number."""
    frames = trajectory.frames(kind)
    figures = []
    for k in pick(len(frames), FILMSTRIP_MOST):
        label, frame = frames[k]
        caption = label if label == "noise" else f"step {label}"
        figures.append(f'<figure data-step="{label}"><img src="{png_data_uri(frame)}" alt="{caption}">'
                       f"<figcaption>{caption}</figcaption></figure>")
    return f'<div class="sdviz-filmstrip" data-frames="{len(frames)}">' + "".join(figures) + "</div>"


def token_slots(tokens: dict) -> str:
    """Every slot the text encoder reads: start token, words, end token, padding."""
    chips = []
    for slot in tokens["slots"]:
        text = html.escape(slot["token"].replace("</w>", ""))
        chips.append(f'<span class="{slot["kind"]}" title="slot {slot["slot"]}: id {slot["id"]} ({slot["kind"]})">{text}</span>')
    words = sum(1 for s in tokens["slots"] if s["kind"] == "word")
    summary = (f"<p>{len(tokens['slots'])} slots: start token, {words} word tokens, end token, "
               f"{sum(1 for s in tokens['slots'] if s['kind'] == 'padding')} padding</p>")
    dropped = f"<p><b>cut off:</b> {html.escape(tokens['dropped'])}</p>" if tokens["dropped"] else ""
    return summary + '<div class="sdviz-tokens">' + "".join(chips) + "</div>" + dropped
