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
from sdviz.messages import text
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
    x_t = [(text("filmstrip.noise"), traj.noise_image)] + [(text("filmstrip.step", step=k + 1),
                                                             traj.step_frames(k, decode)[0]) for k in chosen]
    x0 = [("", None)] + [(text("filmstrip.step", step=k + 1), traj.step_frames(k, decode)[1]) for k in chosen]
    return draw_sheet([(text("sheet.x_t"), x_t), (text("sheet.x0"), x0)],
                      text("sheet.denoising", steps=len(traj.steps), scheduler=traj.settings.scheduler))


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
            reverse.append((text("sheet.not_run"), None))
        elif index > len(traj.steps):  # a stopped run
            reverse.append((text("sheet.not_reached"), None))
        else:
            frame = traj.noise_image if index == 0 else traj.step_frames(index - 1, decode)[0]
            reverse.append((text("filmstrip.step", step=index + 1), frame))
    captions = [f"ᾱ {a:.3f}" for a in process.alpha_bar]
    marked = {chosen.index(start): text("sheet.img2img_start")} if settings.img2img else None
    sheet = draw_sheet([(text("sheet.forward_row"), list(zip(captions, process.frames))),
                        (text("sheet.reverse_row"), reverse)],
                       text("sheet.forward_title", scheduler=settings.scheduler, steps=steps), marked)
    mixed = "x_t = (1 − σ)·x0 + σ·ε" if traj.facts.prediction_type == "flow" else "x_t = √ᾱ·x0 + √(1−ᾱ)·ε"
    note = text("note.forward", mixed=mixed, seed=settings.seed, first=f"{process.alpha_bar[0]:.4f}",
                last=f"{process.alpha_bar[-1]:.4f}", denoiser=traj.denoiser_word, target=prediction_target(traj))
    if settings.img2img:
        note += text("sentence.gap") + text("note.forward_img2img", entry=start + 1, total=len(table),
                                             strength=f"{settings.strength:g}")
    return sheet, note


def latent_sheet(model, image, width: int, height: int, denoiser: str = "UNet"):
    space = latent_space(model, image, width, height)
    channels = views.channel_images(space.latents, side=space.image.shape[0])
    columns = [(text("sheet.image"), space.image),
               *((text("sheet.channel", channel=c), f) for c, f in enumerate(channels)),
               (text("sheet.decoded_back"), space.reconstruction)]
    sheet = draw_sheet([("VAE", columns)], text("sheet.latent_title"))
    facts = model.facts
    note = text("note.latent", pixels=f"{space.pixel_values:,}", image_shape=" × ".join(map(str, space.image.shape)),
                latents=f"{space.latent_values:,}", latent_shape=" × ".join(map(str, space.latents.shape)),
                compression=f"{space.compression:g}", factor=facts.vae_factor, channels=facts.latent_channels,
                psnr=f"{space.psnr:.1f}", denoiser=denoiser)
    return sheet, note


def components_html(traj) -> str:
    facts = traj.facts
    shapes = traj.shapes
    latents = " × ".join(map(str, shapes["latents"]))
    encoders = facts.encoders or [{"name": "text_encoder", "class": "CLIPTextModel", "tokens": facts.tokens,
                                          "width": shapes["token_embeddings"][1]}]
    rows = [(text("components.text", name=encoder["class"]), facts.parameters[encoder["name"]],
             text("components.token_ids", count=encoder["tokens"]), f"{encoder['tokens']} × {encoder['width']}")
            for encoder in encoders]
    denoiser = facts.denoiser
    predicts = text("components.velocity" if facts.prediction_type == "flow" else "components.noise")
    takes = text("components.takes", latents=latents, text=" × ".join(map(str, shapes["token_embeddings"])))
    rows += [(text("components.denoiser", denoiser=f"{traj.denoiser_word[0].upper()}{traj.denoiser_word[1:]}",
                   name=facts.denoiser_class, predicts=predicts), facts.parameters[denoiser],
              takes + ("; " + text("diagram.pooled", width=facts.pooled_width) if facts.pooled_width else "")
              + (f"; {html.added_words(facts.added)}" if facts.added else ""), f"{predicts} {latents}"),
             (text("components.vae"), facts.parameters["vae"],
              text("components.latents", shape=latents), text("components.image",
                                                               shape=" × ".join(map(str, shapes["image"]))))]
    body = "".join(f"<tr><td>{html_text.escape(name)}</td><td>{count:,}</td><td>{inp}</td><td>{out}</td></tr>"
                   for name, count, inp, out in rows)
    return (html.diagram(shapes, facts, "", traj.settings.scheduler) +
            f'<table class="sdviz-walk"><tr>{text("components.header")}</tr>{body}</table>')


def tokens_html(traj) -> str:
    shape = traj.shapes["token_embeddings"]
    joined = text("tokens.joined") if traj.tokens.get("others") else ""
    note = text("tokens.note", denoiser=traj.denoiser_word, tokens=shape[0], width=shape[1], joined=joined)
    return html.token_slots(traj.tokens) + f"<p>{note}</p>"


def _joint_attention_panel(traj, layers, image):
    """attention_panel for an MMDiT transformer (SD3, Flux): image and text tokens attend together."""
    joint = sum(1 for layer in layers if layer.kind == "joint")
    single = sum(1 for layer in layers if layer.kind == "single")
    kinds = text("attention.joint_kinds", joint=joint) + (
        text("attention.single_kinds", single=single) if single else "")
    note = text("attention.note_joint", layers=len(layers), kinds=kinds)
    maps = traj.attention
    if maps is None or not maps.word_slots():
        return None, note + (text("sentence.gap") + text("attention.run_with_capture") if maps is None else "")
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
    counted = text("attention.list_gap").join(
        text("attention.in_block" if block == "mid" else "attention.in_blocks", count=n, block=block)
        for block, n in by_block.items())
    note = text("attention.note_unet", layers=len(layers), self=len(layers) - cross, cross=cross, counted=counted,
                tokens=traj.shapes["token_embeddings"][0])
    maps = traj.attention
    if maps is None:
        return None, note + text("sentence.gap") + text("attention.run_with_capture")
    if not maps.word_slots():
        return None, note
    return _strongest_word(traj, maps, image, note)


def _strongest_word(traj, maps, image, note: str):
    """The heat map of the word that drew the most attention over the whole run, over `image`."""
    mass = maps.aggregate().reshape(len(maps.tokens), -1).sum(axis=1)  # (tokens,) over the whole run
    token = max(maps.word_slots(), key=lambda slot: mass[slot])
    note += text("sentence.gap") + text("attention.strongest", word=shown(maps.tokens[token]))
    return enlarge(overlay(image, maps.heat_map(token)), FILMSTRIP_SIDE * 2), note


def path_panel(traj, decode):
    """The walk's path: the run's map (`sdviz.analysis.path`), and a sentence on where its x0 gathers (the step
    from which it stays near the final image) while x_t travels on."""
    from sdviz.analysis.distance import SETTLED_DISTANCE, distance_to_final, settled_step
    from sdviz.analysis.path import trajectory_map
    from sdviz.drawing.pathmap import map_picture

    if traj.distance_to_final is None:
        traj.distance_to_final = distance_to_final(traj, decode)
    settled = settled_step(traj.distance_to_final["x0"])
    picture, _ = map_picture(trajectory_map([traj]), [text("path.this_run")], marked=(0, len(traj.steps) - 1))
    if settled is None:
        return picture, text("walk.path_never", steps=len(traj.steps), threshold=SETTLED_DISTANCE)
    return picture, text("walk.path_note", settled=settled + 1, steps=len(traj.steps), threshold=SETTLED_DISTANCE)
