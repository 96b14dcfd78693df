"""HTML for the app's drawn panels: the three-component diagram, the live status, the
live frames, the filmstrip and the token slots. Plain strings from a trajectory; no gradio here.

The live panels are sent compactly: frames as data URIs no larger than they are shown
(so no file is written, copied or fetched per step), and the filmstrip grown by
appending, so that gradio's streaming diff sends only its new figures.
"""

from __future__ import annotations

import html

import numpy as np

from sdviz.drawing.uri import data_uri
from sdviz.messages import key_of, text
from sdviz.sampling.models import ModelFacts
from sdviz.sampling.tokens import shown

FILMSTRIP_MOST = 24  # frames shown in the live filmstrip; past this every other one goes
THUMB_SIDE = 96  # the filmstrip's thumbnails, pixels high
LIVE_SIDE = 256  # the live frames' display height in pixels: larger frames are sent at this size

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
.sdviz-live {display:flex; gap:8px; flex-wrap:wrap}
.sdviz-live figure {margin:0; flex:1 1 200px; text-align:center; font-size:13px}
.sdviz-live img, .sdviz-live .empty {height:256px; width:100%; object-fit:contain; image-rendering:pixelated;
  display:block; background:#f4f4f4; border-radius:6px}
.sdviz-filmstrip {display:flex; gap:6px; overflow-x:auto; padding:4px 0; min-height:20px}
.sdviz-filmstrip figure {margin:0; text-align:center; font-size:12px; font-family:monospace; flex:0 0 auto}
.sdviz-filmstrip img {width:80px; height:80px; object-fit:contain; image-rendering:pixelated; display:block}
.sdviz-pixelated img {image-rendering:pixelated; width:100%; height:100%; object-fit:contain}
.sdviz-compare {display:grid; gap:8px; grid-template-columns:repeat(var(--variants), minmax(80px, 200px))}
.sdviz-compare figure {margin:0; text-align:center; font-size:12px; font-family:monospace}
.sdviz-compare .label {font-weight:bold; overflow-wrap:anywhere; height:3.6em; overflow:hidden; display:flex;
  align-items:flex-end; justify-content:center}
.sdviz-compare img, .sdviz-compare .empty {width:100%; aspect-ratio:1; object-fit:contain; image-rendering:pixelated;
  display:block; background:#f4f4f4; border-radius:6px; margin-top:3px}
.sdviz-walk {border-collapse:collapse; margin-top:8px; font-size:14px}
.sdviz-walk td, .sdviz-walk th {border:1px solid #ccc; padding:3px 8px; text-align:left}
.sdviz-tokens {display:flex; flex-wrap:wrap; gap:3px; font-family:monospace; font-size:12px}
.sdviz-tokens span {padding:2px 5px; border-radius:4px; border:1px solid #bbb}
.sdviz-tokens .start, .sdviz-tokens .end {background:#222; color:#fff}
.sdviz-tokens .word {background:#d8ecfa; color:#103a5a; font-weight:bold}
.sdviz-tokens .padding {background:#f2f2f2; color:#999}
"""


def png_data_uri(image: np.ndarray, side: int = THUMB_SIDE) -> str:
    """A thumbnail no higher than `side` pixels (larger frames scaled down; a smaller one sent as it is, for the
    page to enlarge, pixelated), as PNG."""
    return data_uri(image, side, lossless="PNG", lossy=None)


def frame_data_uri(frame: np.ndarray, side: int = LIVE_SIDE) -> str:
    """A live frame as sent to the page: up to `side` pixels high as it is, in PNG (the page enlarges it,
    pixelated); larger frames scaled down to `side` high, in JPEG."""
    return data_uri(frame, side, lossless="PNG", lossy="JPEG")


def live(x_t_image: np.ndarray | None = None, x0_image: np.ndarray | None = None, done: int = 0) -> str:
    """The latest decoded x_t and predicted x0 side by side (empty boxes before the first step)."""
    def figure(frame, caption: str, kind: str) -> str:
        picture = (f'<img src="{frame_data_uri(frame)}" alt="{caption}">' if frame is not None
                   else '<div class="empty"></div>')
        return f'<figure data-kind="{kind}">{picture}<figcaption>{caption}</figcaption></figure>'

    def caption(key: str) -> str:
        return text("live.after", caption=text(key), step=done) if done else text(key)

    return (f'<div class="sdviz-live" data-step="{done}">' + figure(x_t_image, caption("live.x_t"), "x_t")
            + figure(x0_image, caption("live.x0"), "x0") + "</div>")


def compare_column(number: int, label: str, caption: str, x_t_image: np.ndarray | None = None,
                   x0_image: np.ndarray | None = None, side: int = LIVE_SIDE) -> str:
    """One variant's column: its label, its x_t and predicted x0 (empty boxes before its first step) and a
    caption (where it is); frames sent no larger than `side`."""
    def picture(frame, alt: str) -> str:
        return (f'<img src="{frame_data_uri(frame, side)}" alt="{alt}">' if frame is not None
                else '<div class="empty"></div>')

    return (f'<figure data-variant="{number}" data-caption="{html.escape(caption)}">'
            f'<div class="label">{number}: {html.escape(label)}</div>'
            f'{picture(x_t_image, "x_t")}{picture(x0_image, "predicted x0")}'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def compare_columns(figures: list[str]) -> str:
    """The variants side by side: their columns (`compare_column`) in one row, under one root element (what
    the page's script swaps as a comparison streams; empty before any)."""
    row = (f'<div class="sdviz-compare" style="--variants:{max(len(figures), 1)}">' + "".join(figures)
           + f"</div><p>{text('compare.legend')}</p>" if figures else "")
    return f'<div class="sdviz-compare-row">{row}</div>'


def compare_finals(finals: list[tuple[str, np.ndarray | None]], side: int = LIVE_SIDE) -> str:
    """The variants' final images in a row, each under its label."""
    figures = "".join(
        f'<figure data-variant="{number}"><div class="label">{number}: {html.escape(label)}</div>'
        + (f'<img src="{frame_data_uri(image, side)}" alt="final image">' if image is not None
           else '<div class="empty"></div>') + "</figure>"
        for number, (label, image) in enumerate(finals, 1))
    return f'<div class="sdviz-compare" style="--variants:{max(len(finals), 1)}">{figures}</div>' if finals else ""


def _shape(dims) -> str:
    return " × ".join(str(d) for d in dims)


def added_words(added: str) -> str:
    """A model's `ModelFacts.added` (the catalogue's English, parts joined by ', ') in the session's language."""
    return ", ".join(text(said[0]) if (said := key_of(part)) else part for part in added.split(", "))


def diagram(shapes: dict, facts: ModelFacts, active: str = "", scheduler: str = "", step: str = "",
            img2img: bool = False) -> str:
    """The Illustrated Stable Diffusion's three components with this model's real tensor shapes: its text
    encoders (SDXL's two CLIPs, SD3's CLIPs and T5, Flux's CLIP and T5), its denoiser (a UNet, or an MMDiT
    transformer) and its VAE.

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
    encoders = facts.encoders or [{"class": "CLIPTextModel"}]
    text_caption = text("diagram.tokens")
    if len(encoders) > 1:
        each = ", ".join(f"{e['class']} {e['tokens']} × {e['width']}" for e in encoders)
        family = facts.family if facts.family in ("sdxl", "sd3", "flux") else "other"
        text_caption = f"{each}; {text(f'diagram.joined.{family}')}"
    if facts.pooled_width:
        text_caption += "; " + text("diagram.pooled", width=facts.pooled_width)
    transformer = facts.denoiser == "transformer"
    denoiser_caption = f"{text('diagram.latents')} {html.escape(step)}"
    if facts.added:
        denoiser_caption += "; " + html.escape(text("diagram.also", what=added_words(facts.added)))
    parts = []
    if img2img:
        parts += [box("encode", text("diagram.encoder"), "AutoencoderKL.encode", f"{image} → {latents}",
                      text("diagram.encode")), '<div class="sdviz-arrow">→</div>']
    parts += [
        box("text", text("diagram.texts" if len(encoders) > 1 else "diagram.text"),
            " + ".join(e["class"] for e in encoders), tokens, html.escape(text_caption)),
        '<div class="sdviz-arrow">→</div>',
        box("unet", text("diagram.transformer" if transformer else "diagram.unet"),
            f"{facts.denoiser_class} · {scheduler}", latents, denoiser_caption),
        '<div class="sdviz-arrow">→</div>',
        box("vae", text("diagram.decoder"), "AutoencoderKL.decode", image,
            text("diagram.image", factor=facts.vae_factor)),
    ]
    return '<div class="sdviz-diagram">' + "".join(parts) + "</div>"


def status(record=None, total: int = 0, note: str = "") -> str:
    if record is None:
        return f'<div class="sdviz-status" data-step="0">{html.escape(note) or text("status.ready")}</div>'
    done = record.index + 1
    percent = 100 * done / max(total, 1)
    line = text("status.step", done=done, total=total, timestep=f"{record.timestep:g}", sigma=f"{record.sigma:.4f}",
                ms=f"{record.seconds * 1000:.0f}")
    return (
        f'<div class="sdviz-status" data-step="{done}" data-total="{total}">'
        f"{html.escape(line)} {html.escape(note)}"
        f'<div class="sdviz-bar"><div style="width:{percent:.1f}%"></div></div></div>'
    )


class Filmstrip:
    """The live row of decoded x_t from noise to image, each with its step number, grown by appending.

    While a run streams, the page is sent only the figures new since the last update (`news`), which
    it appends to the row it shows (FILMSTRIP_APPEND): a row drawn again whole at every update
    decoded every thumbnail again, the cost growing with the square of the steps. The row is sent
    whole (`html()`) when it starts, when past `most` figures the stride doubles (every other figure
    goes, once per doubling) and at the end. Thumbnails are made only for the frames on the stride.
    `close` ends the row on the run's last frame. The page wraps the figures (FILMSTRIP_TEMPLATE).
    """

    def __init__(self, most: int = FILMSTRIP_MOST):
        self.most, self.stride = most, 1
        self.figures: list[tuple[int, str]] = []  # (steps done, figure HTML); 0 steps is the noise
        self._sent: int | None = None  # the figures the page has; None: it must be sent the whole row

    def add(self, done: int, frame: np.ndarray) -> bool:
        """The x_t frame after `done` steps (0: the starting noise), if it falls on the stride."""
        if done % self.stride:
            return False
        self.figures.append((done, self._figure(done, frame)))
        if len(self.figures) > self.most:
            self.stride *= 2
            self.figures = [f for f in self.figures if f[0] % self.stride == 0]
            self._sent = None
        return True

    def news(self) -> tuple[str | None, str]:
        """(the whole row, when the page must draw it again, else None; the figures new since the last call,
        for the page to append)."""
        whole = self.html() if self._sent is None else None
        new = "" if whole is not None else "".join(figure for _, figure in self.figures[self._sent:])
        self._sent = len(self.figures)
        return whole, new

    def close(self, done: int, frame: np.ndarray) -> None:
        """Ends the row on the frame after `done` steps, wherever the stride falls."""
        if not self.figures or self.figures[-1][0] != done:
            self.figures.append((done, self._figure(done, frame)))

    def html(self) -> str:
        return "".join(figure for _, figure in self.figures)

    @staticmethod
    def _figure(done: int, frame: np.ndarray) -> str:
        label = str(done) if done else text("filmstrip.noise")
        caption = text("filmstrip.step", step=done) if done else text("filmstrip.noise")
        return (f'<figure data-step="{label}"><img src="{png_data_uri(frame)}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>")


FILMSTRIP_TEMPLATE = '<div class="sdviz-filmstrip">${value}</div>'  # the page's row around the figures
FEED_SPACING_MS = 150  # the page's script asks for the next update this long after it drew the last, at least
# The page's side of ui.live_feed: asks the server function `live` what changed in the session's run, and puts
# each panel in place of the one the page shows (each has a root element of its own class), the filmstrip's
# new figures at its end. It asks again once the browser has drawn that and FEED_SPACING_MS have passed, so a
# busy browser asks less often (what changed meanwhile comes together); after an error, after a pause.
FEED_SCRIPT = """
const spacing = FEED_SPACING_MS;
const seen = {run: 0, at: 0};
const count = element.closest('#live-feed') || element;  // data-drawn: the updates drawn so far
const swap = (selector, markup) => {
  const shown = document.querySelector(selector);
  if (shown && typeof markup === 'string') shown.outerHTML = markup;
};
const pause = (ms) => new Promise((done) => setTimeout(done, ms));
// a run's button pressed: the run armed on the server before gradio queues it (ui.session.Arming; the run's
// event awaits this through arm_js), its token the run's; the status says it is queued
window.sdvizArm = async () => {
  try {
    const armed = await server.arm({});
    if (armed && typeof armed.token === 'string') {
      swap('#status .sdviz-status', armed.status);
      return armed.token;
    }
  } catch (error) {}
  return null;  // the run is armed when it starts (ui.session.Arming.take)
};
(async () => {
  while (element.isConnected) {
    let news = null;
    try {
      news = await server.live({run: seen.run, at: seen.at});
    } catch (error) {
      await pause(2000);
      continue;
    }
    if (!news || typeof news.run !== 'number' || news.error) {
      await pause(2000);
      continue;
    }
    seen.run = news.run;
    seen.at = news.at;
    swap('#diagram .sdviz-diagram', news.diagram);
    swap('#status .sdviz-status', news.status);
    swap('#live .sdviz-live', news.live);
    swap('#compare-columns .sdviz-compare-row', news.columns);  // a comparison's variants (ui.tabs.compare)
    const row = document.querySelector('#filmstrip .sdviz-filmstrip');
    if (row && typeof news.strip === 'string') row.innerHTML = news.strip;
    if (row && news.figures) row.insertAdjacentHTML('beforeend', news.figures);
    if (Object.keys(news).length > 2) count.dataset.drawn = String(Number(count.dataset.drawn || 0) + 1);
    const asked = performance.now();
    await new Promise((drawn) => requestAnimationFrame(() => setTimeout(drawn, 0)));
    await pause(Math.max(0, spacing - (performance.now() - asked)));
  }
})();
""".replace("FEED_SPACING_MS", str(FEED_SPACING_MS))


def arm_js(place: int) -> str:
    """A run event's js: the run armed by the page's script (FEED_SCRIPT's sdvizArm), its token put in the
    request's value number `place` (the run's "stop_signal"), before gradio sends it."""
    return ("async (...values) => { const token = window.sdvizArm ? await window.sdvizArm() : null; "
            f"values[{place}] = token; return values; }}")
# the page appends a streamed run's new figures to the row it shows (Filmstrip.news)
FILMSTRIP_APPEND = """(figures) => {
  const row = document.querySelector('#filmstrip .sdviz-filmstrip');
  if (row && figures) row.insertAdjacentHTML('beforeend', figures);
}"""


def token_slots(tokens: dict) -> str:
    """Every slot the text encoder reads: start token, words, end token, padding; then the other text
    encoders' slots (SDXL's second CLIP, SD3's and Flux's T5 or CLIP), each under its name."""
    others = "".join(f"<h4>{html.escape(other['encoder'])} ({html.escape(other['tokenizer'])})</h4>" + _slots(other)
                     for other in tokens.get("others", []))
    if not others:
        return _slots(tokens)
    heading = text("tokens.heat_slots", encoder=tokens.get("encoder", "text_encoder"))
    return f"<h4>{html.escape(heading)}</h4>" + _slots(tokens) + others


def _slots(tokens: dict) -> str:
    chips = []
    for slot in tokens["slots"]:
        token = html.escape(shown(slot["token"]))
        chips.append(f'<span class="{slot["kind"]}" title="slot {slot["slot"]}: id {slot["id"]} ({slot["kind"]})">'
                     f'{token}</span>')
    words = sum(1 for s in tokens["slots"] if s["kind"] == "word")
    start = text("tokens.start") if any(s["kind"] == "start" for s in tokens["slots"]) else ""  # T5 has none
    summary = "<p>" + html.escape(text("tokens.summary", slots=len(tokens["slots"]), start=start, words=words,
                                       padding=sum(1 for s in tokens["slots"] if s["kind"] == "padding"))) + "</p>"
    dropped = (f"<p><b>{html.escape(text('tokens.cut_off'))}</b> {html.escape(tokens['dropped'])}</p>"
               if tokens["dropped"] else "")
    return summary + '<div class="sdviz-tokens">' + "".join(chips) + "</div>" + dropped
