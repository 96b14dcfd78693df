"""The explaining tabs' pictures and tables, from a run (no gradio): the denoising filmstrip, the forward
process beside the run's own reverse steps, the latent space, the model's components and token slots, and
where the attention went. The Forward process and Latent space tabs show one each; the walk shows them all.
"""

from __future__ import annotations

import html as html_text

from sdviz.analysis import schedule
from sdviz.drawing import views
from sdviz.drawing.sheets import FILMSTRIP_SIDE, enlarge, pick
from sdviz.drawing.sheets import sheet as draw_sheet
from sdviz.drawing.views import overlay, prompt_effect
from sdviz.sampling.attention.layers import attention_layers
from sdviz.sampling.tokens import shown
from ui import html
from ui.plots import prediction_target, run_start
from ui.zerogpu import forward_process, latent_space

FORWARD_COLUMNS = 8  # noise levels shown in the forward-process rows


def guidance_pictures(decoder, record) -> tuple:
    """(x0 frame of the empty prompt, of the prompt, what the prompt adds, its largest change) at a step;
    `decoder`: the run's own (ui.session.RunDecoder)."""
    uncond, cond = decoder.guidance_frames(record)
    return (uncond, cond, *prompt_effect(uncond, cond))


def denoising_sheet(traj, decode, most: int = FORWARD_COLUMNS):
    """The filmstrip of the run: x_t and x0 at up to `most` steps, from the noise on, each decoded
    (or taken from the frame cache) as it is drawn, so a long run does not decode every step."""
    chosen = pick(len(traj.steps), most - 1)
    x_t = [("noise", traj.noise_image)] + [(f"step {k + 1}", traj.step_frames(k, decode)[0]) for k in chosen]
    x0 = [("", None)] + [(f"step {k + 1}", traj.step_frames(k, decode)[1]) for k in chosen]
    return draw_sheet([("x_t", x_t), ("predicted x0", x0)],
                      f"denoising steps (of {len(traj.steps)}, {traj.settings.scheduler}): from noise to image")


def forward_sheet(model, traj, image, decode):
    """The forward process of `image` at the run's noise levels (up to FORWARD_COLUMNS of them) above the
    run's own x_t entering the same steps; for img2img the strength's starting point marked."""
    settings = traj.settings
    steps = settings.steps
    table = schedule.schedule_table(settings.scheduler, steps, model.scheduler_config, model.facts.family,
                                    traj.image_tokens)
    start = run_start(traj, model.scheduler_config)
    chosen = pick(len(table), FORWARD_COLUMNS)
    if settings.img2img and start not in chosen:
        chosen = sorted({*chosen[:-1], start, chosen[-1]})[:FORWARD_COLUMNS + 1]
    process = forward_process(model, image, settings.scheduler, steps, settings.seed, settings.preview,
                              levels=chosen, width=settings.width, height=settings.height)
    reverse = []
    for entry in chosen:
        index = entry - start  # the run's step that starts at this level
        if index < 0:
            reverse.append(("not run", None))
        elif index > len(traj.steps):  # a stopped run
            reverse.append(("not reached", None))
        else:
            frame = traj.noise_image if index == 0 else traj.step_frames(index - 1, decode)[0]
            reverse.append((f"step {index + 1}", frame))
    captions = [f"ᾱ {a:.3f}" for a in process.alpha_bar]
    marked = {chosen.index(start): "img2img starts here"} if settings.img2img else None
    sheet = draw_sheet([("forward q(x_t|x0)", list(zip(captions, process.frames))),
                        ("reverse (this run)", reverse)],
                       f"the same noise levels ({settings.scheduler}, {steps} steps), both directions", marked)
    mixed = "x_t = (1 − σ)·x0 + σ·ε" if traj.facts.prediction_type == "flow" else "x_t = √ᾱ·x0 + √(1−ᾱ)·ε"
    note = (f"Top: the image encoded, then noised to the run's levels: {mixed}, one ε for all "
            f"(seed {settings.seed}). ᾱ goes from {process.alpha_bar[0]:.4f} (almost all noise) to "
            f"{process.alpha_bar[-1]:.4f} (almost all image). Bottom: the x_t this run was at when it reached each "
            f"level. Training shows the {traj.denoiser_word} the top row and asks it for {prediction_target(traj)}; "
            "sampling walks the bottom row.")
    if settings.img2img:
        note += (f" This img2img run started at entry {start + 1} of {len(table)} (strength {settings.strength:g}): "
                 "the input image, noised to that level, replaced the pure noise.")
    return sheet, note


def latent_sheet(model, image, width: int, height: int, denoiser: str = "UNet"):
    space = latent_space(model, image, width, height)
    channels = views.channel_images(space.latents, side=space.image.shape[0])
    columns = [("image", space.image), *((f"channel {c}", f) for c, f in enumerate(channels)),
               ("decoded back", space.reconstruction)]
    sheet = draw_sheet([("VAE", columns)], "encoded to latents, each channel a picture, and decoded back")
    facts = model.facts
    note = (f"{space.pixel_values:,} pixel values ({' × '.join(map(str, space.image.shape))}) become "
            f"{space.latent_values:,} latent values ({' × '.join(map(str, space.latents.shape))}): "
            f"**{space.compression:g}× fewer** (VAE factor {facts.vae_factor}, {facts.latent_channels} channels). "
            f"Decoded back the image comes out at a PSNR of **{space.psnr:.1f} dB**. The {denoiser} works in "
            "this small space; only the VAE ever sees pixels.")
    return sheet, note


def components_html(traj) -> str:
    facts = traj.facts
    shapes = traj.shapes
    latents = " × ".join(map(str, shapes["latents"]))
    encoders = facts.encoders or [{"name": "text_encoder", "class": "CLIPTextModel", "tokens": facts.tokens,
                                          "width": shapes["token_embeddings"][1]}]
    rows = [(f"Text encoder ({encoder['class']})", facts.parameters[encoder["name"]],
             f"{encoder['tokens']} token ids", f"{encoder['tokens']} × {encoder['width']}") for encoder in encoders]
    denoiser = facts.denoiser
    predicts = "velocity" if facts.prediction_type == "flow" else "noise"
    rows += [(f"{traj.denoiser_word[0].upper()}{traj.denoiser_word[1:]} ({facts.denoiser_class}, "
              f"{predicts} predictor)", facts.parameters[denoiser],
              f"x_t {latents}, timestep, {' × '.join(map(str, shapes['token_embeddings']))} text"
              + (f", pooled {facts.pooled_width}" if facts.pooled_width else "")
              + (f", {facts.added}" if facts.added else ""), f"{predicts} {latents}"),
             ("VAE (AutoencoderKL: encoder + decoder)", facts.parameters["vae"],
              f"latents {latents}", f"image {' × '.join(map(str, shapes['image']))}")]
    body = "".join(f"<tr><td>{html_text.escape(name)}</td><td>{count:,}</td><td>{inp}</td><td>{out}</td></tr>"
                   for name, count, inp, out in rows)
    return (html.diagram(shapes, facts, "", traj.settings.scheduler) +
            f'<table class="sdviz-walk"><tr><th>component</th><th>parameters</th><th>takes</th><th>gives</th></tr>'
            f"{body}</table>")


def tokens_html(traj) -> str:
    shape = traj.shapes["token_embeddings"]
    joined = " (the text encoders' outputs joined)" if traj.tokens.get("others") else ""
    return (html.token_slots(traj.tokens) +
            f"<p>Each slot becomes one vector: the {traj.denoiser_word} reads <b>{shape[0]} × {shape[1]}</b>{joined}, "
            "the same size for every prompt (padding fills the rest).</p>")


def _joint_attention_panel(traj, layers, image):
    """attention_panel for an MMDiT transformer (SD3, Flux): image and text tokens attend together."""
    joint = sum(1 for layer in layers if layer.kind == "joint")
    single = sum(1 for layer in layers if layer.kind == "single")
    kinds = f"{joint} joint (image and text tokens in two streams)" + (
        f" and {single} single-stream (one sequence, the text first)" if single else "")
    note = (f"The transformer has {len(layers)} attention layers, {kinds}. There is no separate cross-attention: "
            "every image token attends to every image and text token at once, and the image-token × text-token "
            "part of that attention is how the words steer the picture; the heat maps are that part.")
    maps = traj.attention
    if maps is None or not maps.word_slots():
        return None, note + (" Run with attention capture on to see where each word went." if maps is None else "")
    return _strongest_word(traj, maps, image, note)


def attention_panel(traj, model, image):
    """Where the cross-attention layers sit, counted from the UNet itself, and this run's heat map of the
    word that drew the most cross-attention over the whole run, over `image`."""
    layers = attention_layers(model.denoiser)
    if traj.facts.denoiser == "transformer":
        return _joint_attention_panel(traj, layers, image)
    by_block: dict[str, int] = {}
    for layer in layers:
        if layer.kind == "cross":
            block = layer.name.split(".")[0].replace("_blocks", "").replace("mid_block", "mid")
            by_block[block] = by_block.get(block, 0) + 1
    cross = sum(by_block.values())
    counted = ", ".join(f"{n} in the {block} block{'' if block == 'mid' else 's'}" for block, n in by_block.items())
    note = (f"The UNet has {len(layers)} attention layers: {len(layers) - cross} self-attention and {cross} "
            f"cross-attention ({counted}), each after a ResNet block. In a cross-attention layer every latent pixel "
            f"asks all {traj.shapes['token_embeddings'][0]} token vectors which matter to it: that is how the words "
            "steer the picture.")
    maps = traj.attention
    if maps is None:
        return None, note + " Run with attention capture on to see where each word went."
    if not maps.word_slots():
        return None, note
    return _strongest_word(traj, maps, image, note)


def _strongest_word(traj, maps, image, note: str):
    """The heat map of the word that drew the most attention over the whole run, over `image`."""
    mass = maps.aggregate().reshape(len(maps.tokens), -1).sum(axis=1)  # (tokens,) over the whole run
    token = max(maps.word_slots(), key=lambda slot: mass[slot])
    note += (f" Below: where “{shown(maps.tokens[token])}”, the word that drew the most attention, "
             "was looked at over the whole run (the Attention tab shows any word at any step).")
    return enlarge(overlay(image, maps.heat_map(token)), FILMSTRIP_SIDE * 2), note
