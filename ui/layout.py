"""The page: inputs on the left, the live run on the right, the explorer below.

`build_demo(config, handlers)` only places components and wires events to the
handlers; everything it shows comes from `ui.handlers` and the core.
"""

from __future__ import annotations

import gradio as gr

from sdviz.analysis.align import ALIGNMENTS
from sdviz.sampling.checks import PREVIEW_MODES
from sdviz.sampling.models import display_name
from sdviz.sampling.settings import Settings
from sdviz.workflows.compare import VARIED
from ui import explain as explain_views
from ui import html, walk
from ui.compare import NOTHING, PLOT_X, POSITION_STEPS, VALUES_INFO, CompareHandlers, example_values
from ui.components import Dropdown, Image, Radio, Slider
from ui.explain import ExplainHandlers
from ui.form import Form
from ui.handlers import SPANS, on_spaces, random_seed, scheduler_choices

DEFAULTS = Settings()


def _model_choices(config) -> list[tuple[str, str]]:
    """(label, name): the menu shows and sends names, so no install path reaches the page or the API."""
    return [(display_name(m) + (" (default)" if m == config.default_model else ""), display_name(m)) for m in config.models]


def build_demo(config, handlers) -> gr.Blocks:
    default_model = handlers.model(config.default_name)
    default = default_model.facts
    limits = config.limits
    blank = {"token_embeddings": list(default.token_shape()),
             "latents": list(default.latent_shape(default.native_height, default.native_width)),
             "image": list(default.image_shape(default.native_height, default.native_width))}
    private = {"api_visibility": "private"}

    with gr.Blocks(title="sdviz: watch Stable Diffusion denoise") as demo:  # files: ui.files prunes them
        gr.Markdown("# sdviz · watch Stable Diffusion turn noise into an image\n"
                    "Type a prompt and press **Generate**: every denoising step is decoded as it happens.")
        diagram = gr.HTML(html.diagram(blank, default, "", default.scheduler), elem_id="diagram")
        trajectory = gr.State(None)
        comparison = gr.State(None)  # the session's comparison (sdviz.workflows.compare.Comparison)
        parent = gr.State(None)  # the run the shown one was forked from
        stop_signal = gr.State(None)  # the running (or queued) run's StopSignal
        written = gr.State(None)  # the run's download files, once asked for
        opened = gr.State([])  # the explaining tabs this session opened: drawn again after each run
        explainer = ExplainHandlers(handlers)
        comparer = CompareHandlers(handlers)

        with gr.Row():
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Text to image", id="txt2img"):
                        prompt = gr.Textbox(label="Prompt", value=default_model.examples[0], lines=2, elem_id="prompt")
                        examples = gr.Radio(choices=list(default_model.examples), value=None, label="Try a prompt",
                                            elem_id="examples")
                        generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Tab("Image to image", id="img2img"):
                        init_image = Image(label="Start image", type="filepath", elem_id="init-image")
                        strength = Slider(0.05, 1.0, value=DEFAULTS.strength, step=0.05, label="Strength (share of the schedule run)")
                        generate_img2img = gr.Button("Generate from image", variant="primary", elem_id="generate-img2img")
                    with gr.Tab("Edit or invert an image", id="edit"):
                        edit_image = Image(label="The image", type="filepath", elem_id="edit-image")
                        source_prompt = gr.Textbox(label="What the image shows (source prompt)", lines=1,
                                                   elem_id="source-prompt")
                        edit_prompt = gr.Textbox(label="What it should show instead (the edit)", lines=1,
                                                 elem_id="edit-prompt")
                        with gr.Row():
                            edit_strength = Slider(0.05, 1.0, value=DEFAULTS.strength, step=0.05,
                                                   label="Strength (share of the schedule run)", elem_id="edit-strength")
                            source_guidance = Slider(0, 20, value=DEFAULTS.source_guidance, step=0.5,
                                                     label="Source guidance", elem_id="source-guidance")
                        with gr.Row():
                            edit_button = gr.Button("Edit (CycleDiffusion)", variant="primary", elem_id="edit")
                            invert_button = gr.Button("Invert to noise and back", elem_id="invert")
                        gr.Markdown(walk.EDIT_INTRO)
                negative = gr.Textbox(label="Negative prompt", value="", elem_id="negative")
                stop = gr.Button("Stop", variant="stop", elem_id="stop")
                with gr.Accordion("Settings", open=True):
                    model = Dropdown(_model_choices(config), value=config.default_name, label="Model",
                                     allow_custom_value=config.allow_custom_models, elem_id="model")
                    scheduler = Dropdown(scheduler_choices(default.family), value=default.scheduler, label="Scheduler",
                                         elem_id="scheduler")
                    steps = Slider(1, limits.steps, value=DEFAULTS.steps, step=1, label="Steps", elem_id="steps")
                    guidance = Slider(0, 20, value=DEFAULTS.guidance, step=0.5, label="Guidance scale", elem_id="guidance")
                    true_cfg = Slider(1, 20, value=DEFAULTS.true_cfg, step=0.5, elem_id="true-cfg",
                                      label="True CFG (Flux: real guidance with the negative prompt, above 1)",
                                      visible=default.family == "flux")
                    with gr.Row():
                        seed = gr.Number(value=DEFAULTS.seed, step=1, label="Seed", elem_id="seed")
                        dice = gr.Button("random seed", size="sm", elem_id="random-seed")
                    with gr.Row():
                        width = gr.Number(value=default.native_width, step=default.vae_factor, label="Width", elem_id="width")
                        height = gr.Number(value=default.native_height, step=default.vae_factor, label="Height", elem_id="height")
                    eta = Slider(0, 1, value=DEFAULTS.eta, step=0.05, label="eta (DDIM noise)")
                    with gr.Row():
                        preview = Radio(list(PREVIEW_MODES), value=DEFAULTS.preview, label="Preview decoder")
                        every = gr.Number(value=DEFAULTS.every, step=1, label="Decode every N steps")
                    attention = gr.Checkbox(value=True, label="Capture attention (heat maps, self-attention probe)")
            with gr.Column(scale=3):
                status = gr.HTML(html.status(), elem_id="status")
                live_frames = gr.HTML(html.live(), elem_id="live")  # x_t and x0, sent as compact data URIs
                filmstrip = gr.HTML("", html_template=html.FILMSTRIP_TEMPLATE, elem_id="filmstrip")
                final = gr.Image(label="Final image", height=192, format="png", interactive=False, elem_id="final",
                                 elem_classes="sdviz-pixelated")

        with gr.Row():  # the step every panel below shows
            step = gr.Slider(1, 2, value=1, step=1, label="Step", interactive=False, elem_id="step-slider")
            play = gr.Button("▶ play", size="sm", elem_id="play")
            pause = gr.Button("❚❚ pause", size="sm")
        with gr.Tabs():
            with gr.Tab("Explore the steps"):
                step_info = gr.Markdown(elem_id="step-info")
                with gr.Row():
                    fork = gr.Button("Fork from this step", size="sm", elem_id="fork")
                    gr.Markdown("continues this run after the step on the slider with the prompt, negative prompt, "
                                "guidance and eta on the left (model, scheduler, steps, seed and size stay)")
                with gr.Row(elem_classes="sdviz-pixelated"):
                    xt_view = gr.Image(label="x_t after this step", height=200, format="png", interactive=False, elem_id="xt-view")
                    x0_view = gr.Image(label="predicted x0", height=200, format="png", interactive=False, elem_id="x0-view")
                    noise_view = gr.Image(label="predicted noise", height=200, format="png", interactive=False)
                channels = gr.Gallery(label="latent channels (x_t)", columns=4, height=180, elem_classes="sdviz-pixelated")
                gr.Markdown(walk.GUIDANCE_INTRO)
                with gr.Row(elem_classes="sdviz-pixelated"):
                    guidance_views = [
                        gr.Image(label=label, height=180, format="png", interactive=False, elem_id=elem_id)
                        for label, elem_id in (("x0 from the empty (negative) prompt", "x0-uncond"),
                                               ("x0 from the prompt", "x0-cond"),
                                               ("guided x0", "x0-guided"),
                                               ("what the prompt adds: red brighter, blue darker", "prompt-effect"))]
                formula = gr.Markdown(elem_id="guidance-formula")
                with gr.Accordion("The edit against its source", open=False) as edit_box:  # opened by an edit
                    edit_note = gr.Markdown(elem_id="edit-note")
                    edit_view = gr.Image(show_label=False, format="png", interactive=False, elem_id="edit-view")
                    edit_plot = gr.LinePlot(x="step", y="value", color="curve", title="where the edit departs",
                                            height=220, elem_id="edit-plot")
                with gr.Accordion("The round trip: the image inverted and reconstructed", open=False) as trip_box:
                    trip_note = gr.Markdown(elem_id="trip-note")
                    trip_view = gr.Image(show_label=False, format="png", interactive=False, elem_id="trip-view")
                with gr.Accordion("The fork against its parent", open=False) as fork_box:  # opened by a fork
                    fork_note = gr.Markdown(elem_id="fork-note")
                    fork_view = gr.Image(show_label=False, format="png", interactive=False, elem_id="fork-view")
                    fork_plot = gr.LinePlot(x="step", y="value", color="curve", title="distance to each run's final image",
                                            height=240, elem_id="fork-plot")
            with gr.Tab("Compare", elem_id="compare-tab"):
                gr.Markdown(walk.COMPARE_INTRO)
                with gr.Row():
                    vary_first = Dropdown(list(VARIED), value="scheduler", label="Vary", elem_id="vary-first")
                    vary_first_values = gr.Textbox(value=example_values("scheduler"), label="its values",
                                                   info=VALUES_INFO, elem_id="vary-first-values", scale=3)
                with gr.Row():
                    vary_second = Dropdown([("nothing else", NOTHING), *((n, n) for n in VARIED)], value=NOTHING,
                                           label="and vary", elem_id="vary-second")
                    vary_second_values = gr.Textbox(value="", label="its values", info=VALUES_INFO,
                                                    elem_id="vary-second-values", scale=3)
                with gr.Row():
                    align = Radio(list(ALIGNMENTS), value="progress", label="Line the runs up by",
                                  info="progress: the same share of each run's steps; sigma: the same noise level",
                                  elem_id="align")
                    compare = gr.Button("Compare", variant="primary", elem_id="compare")
                compare_status = gr.HTML(html.status(), elem_id="compare-status")
                position = gr.Slider(0, POSITION_STEPS, value=POSITION_STEPS, step=1, interactive=False,
                                     label="Where along the runs (% of the way from the noise to the image)",
                                     elem_id="compare-position")
                compare_columns = gr.HTML(elem_id="compare-columns")
                variants_plot = gr.LinePlot(x=PLOT_X, y="distance", color="variant", y_title="mean |x0 − final|",
                                           title="each variant's predicted x0: distance to its final image",
                                           height=260, elem_id="compare-plot")
                compare_note = gr.Markdown(elem_id="compare-note")
                gr.Markdown("**The final images** (the full decoder):")
                compare_finals = gr.HTML(elem_id="compare-finals")
                compare_files_button = gr.Button("Grid PNG, GIF and MP4 of the comparison", size="sm",
                                                 elem_id="compare-files-button")
                compare_files = gr.File(label="the comparison", file_count="multiple", elem_id="compare-files")
            with gr.Tab("Noise schedule", elem_id="schedule-tab") as schedule_tab:
                gr.Markdown(walk.SCHEDULE_INTRO)
                schedule_plot = gr.LinePlot(x="step", y="value", color="curve", title="this run's noise levels",
                                            color_map=explain_views.SCHEDULE_COLOURS,
                                            height=260, elem_id="schedule-plot")
                compare_plot = gr.LinePlot(x="share of steps done", y="value", color="scheduler", y_title="log10 σ",
                                           title="where schedulers spend their steps (same step count)",
                                           height=260, elem_id="compare-plot")
                gr.Markdown(walk.DECIDED_INTRO)
                distance_plot = gr.LinePlot(x="step", y="value", color="curve", y_title="mean |frame − final|",
                                            color_map=explain_views.DISTANCE_COLOURS,
                                            title="distance to the final image", height=260, elem_id="distance-plot")
                decided = gr.Markdown(elem_id="decided")
            with gr.Tab("Forward process", elem_id="forward-tab") as forward_tab:
                gr.Markdown(walk.FORWARD_INTRO)
                forward_image = gr.Image(label="forward (top) and reverse (bottom) at the same noise levels",
                                         show_label=False, format="png", interactive=False, elem_id="forward-image")
                forward_note = gr.Markdown(elem_id="forward-note")
                with gr.Row():
                    forward_upload = Image(label="or noise an image of your own", type="filepath", height=160)
                    forward_button = gr.Button("Noise this image", size="sm")
            with gr.Tab("Latent space", elem_id="latent-tab") as latent_tab:
                gr.Markdown(walk.LATENT_INTRO)
                latent_image = gr.Image(label="the VAE: image, latent channels, decoded back", show_label=False,
                                        format="png", interactive=False, elem_id="latent-image")
                latent_note = gr.Markdown(elem_id="latent-note")
                with gr.Row():
                    latent_upload = Image(label="or encode an image of your own", type="filepath", height=160)
                    latent_button = gr.Button("Encode this image", size="sm")
            with gr.Tab("Tokens"):
                tokens = gr.HTML(elem_id="tokens")
            with gr.Tab("Attention"):
                with gr.Row():
                    word = gr.Radio([], label="Word", elem_id="word")
                    resolution = gr.Dropdown(["all"], value="all", label="Resolution")
                    span = gr.Radio(list(SPANS), value="this step", label="Steps")
                with gr.Row(elem_classes="sdviz-pixelated"):
                    heat = gr.Image(label="cross-attention heat map (DAAM)", height=220, format="png", interactive=False, elem_id="heat")
                    probe = gr.Image(label="self-attention probe: click the x0 here", height=220, format="png", interactive=False)
                    probe_resolution = gr.Dropdown([], label="Self-attention resolution")
                show_layers = gr.Button("Show the attention layers", size="sm")
                layer_rows = gr.Dataframe(headers=["index", "kind", "resolution", "query", "key", "value", "probs", "name"],
                                          label="Attention layers in execution order", wrap=True)
            with gr.Tab("How it works", elem_id="walk-tab") as walk_tab:
                walk_panels = walk.build()
            with gr.Tab("Downloads", elem_id="downloads-tab") as downloads_tab:
                downloads = gr.File(label="GIF, MP4, filmstrip, trajectory, and run.html (the run as one page that "
                                    "replays it offline)", file_count="multiple", elem_id="downloads")

        # --- events --------------------------------------------------------------------
        form = Form(stop_signal=stop_signal, prompt=prompt, negative_prompt=negative, model=model, scheduler=scheduler,
                    steps=steps, guidance=guidance, seed=seed, width=width, height=height, eta=eta, preview=preview,
                    every=every, attention=attention, true_cfg=true_cfg, init_image=init_image, strength=strength,
                    parent=trajectory, step=step)
        run = ("stop_signal", "prompt", "negative_prompt", "model", "scheduler", "steps", "guidance", "seed", "width",
               "height", "eta", "preview", "every")  # the runs' names; each run but Compare's adds "attention"
        live = [diagram, status, live_frames, filmstrip, final, trajectory]
        after = [step, tokens, word, resolution, probe_resolution, downloads, written]
        explorer = [xt_view, x0_view, noise_view, channels, step_info, heat]
        run_options = dict(concurrency_limit=config.concurrency, concurrency_id="model", show_progress="hidden", **private)

        # Each run gets its stop signal before it is queued, so Stop reaches it queued or running;
        # arming a new run stops the session's earlier one. A stopped run still finishes (its
        # partial trajectory, attention maps and downloads).
        again = dict(trigger_mode="multiple")  # Generate during a run: that run stops, this one is queued
        arm = dict(fn=handlers.arm, inputs=stop_signal, outputs=[stop_signal, status], concurrency_limit=None,
                   show_progress="hidden", **again, **private)
        txt2img_run = generate.click(**arm).then(**form.bind(handlers.stream, *run, "attention", "true_cfg"),
                                                 outputs=live, **run_options, **again)
        img2img_run = generate_img2img.click(**arm).then(
            **form.bind(handlers.stream_img2img, *run, "attention", "init_image", "strength"), outputs=live,
            **run_options, **again)
        edit_run = edit_button.click(**arm).then(
            **form.bind(handlers.stream_edit, *run, "attention", prompt=edit_prompt, init_image=edit_image,
                        strength=edit_strength, source_prompt=source_prompt, source_guidance=source_guidance),
            outputs=live, **run_options, **again)
        invert_run = invert_button.click(**arm).then(
            **form.bind(handlers.stream_invert, "stop_signal", "negative_prompt", "model", "steps", "guidance", "seed",
                        "width", "height", "preview", "every", "attention", prompt=source_prompt,
                        init_image=edit_image), outputs=[*live, parent], **run_options, **again)
        step_inputs = [trajectory, step, word, resolution, span]
        show = dict(fn=handlers.show_step, inputs=step_inputs, outputs=explorer, concurrency_limit=None,
                    show_progress="hidden", **private)
        step_views = dict(fn=explainer.step_views, inputs=[trajectory, step],
                          outputs=[*guidance_views, formula, schedule_plot, compare_plot, distance_plot],
                          concurrency_limit=None,
                          show_progress="hidden", **private)
        forward_outputs, latent_outputs = [forward_image, forward_note], [latent_image, latent_note]

        def explained(event):
            """After a run: the explorer, the step's explaining panels, and the explaining tabs this
            session has opened (the others are drawn when opened: nothing is computed that nobody looks at)."""
            event.then(**show).then(**step_views).then(
                explainer.refresh, [trajectory, step, opened],
                [distance_plot, decided, *forward_outputs, *latent_outputs, *walk_panels], show_progress="hidden",
                **private)

        fork_run = fork.click(**arm).then(
            **form.bind(handlers.stream_fork, "stop_signal", "parent", "step", "prompt", "negative_prompt", "guidance",
                        "eta", "preview", "every", "attention"), outputs=[*live, parent], **run_options, **again)
        fork_run.success(explainer.fork_view, [trajectory, parent], [fork_view, fork_plot, fork_note, fork_box],
                         show_progress="hidden", **private)
        for event in (txt2img_run, img2img_run, edit_run, invert_run):  # nobody's fork: no earlier fork's views
            event.success(lambda: (None, None, "", gr.update(open=False)), None,
                          [fork_view, fork_plot, fork_note, fork_box], show_progress="hidden", **private)
        edit_outputs = [edit_view, edit_plot, edit_note, edit_box]
        for event in (txt2img_run, img2img_run, edit_run, invert_run, fork_run):  # opened for an edit, else closed
            event.success(lambda traj: explainer.edit_view(traj, None), trajectory, edit_outputs,  # the last step
                          show_progress="hidden", **private)
        for event in (txt2img_run, img2img_run, edit_run, fork_run):
            event.success(lambda: (None, "", gr.update(open=False)), None, [trip_view, trip_note, trip_box],
                          show_progress="hidden", **private)
        invert_run.success(explainer.round_trip_view, [trajectory, parent], [trip_view, trip_note, trip_box],
                           show_progress="hidden", **private)
        for event in (txt2img_run, img2img_run, edit_run, invert_run, fork_run):
            # the explorer is drawn for the new run even when the slider lands on the value it had
            explained(event.success(handlers.finish, trajectory, after, **again, **private))
            event.failure(handlers.refused, None, status, show_progress="hidden", **private)
        compare_run = compare.click(**arm).then(
            **form.bind(comparer.stream, *run, first_name=vary_first, first_values=vary_first_values,
                        second_name=vary_second, second_values=vary_second_values, align=align), outputs=[compare_status, compare_columns, comparison], **run_options, **again)
        compare_run.success(lambda: None, None, compare_files, show_progress="hidden", **private).then(
            comparer.finish, [comparison, align], [position, compare_columns, variants_plot, compare_note,
                                                   compare_finals], show_progress="hidden", **private)
        compare_run.failure(handlers.refused, None, compare_status, show_progress="hidden", **private)
        for trigger in (position.change, align.change):
            trigger(comparer.show, [comparison, position, align], [compare_columns, variants_plot, compare_note],
                    concurrency_limit=None, show_progress="hidden", **private)
        def vary_values(name, prompt_text, model_name):
            prompts = handlers.model(model_name).examples if name == "prompt" else ()
            return example_values(name, prompt_text, [choice for _, choice in _model_choices(config)], prompts)

        for menu, values in ((vary_first, vary_first_values), (vary_second, vary_second_values)):
            menu.input(vary_values, [menu, prompt, model], values, show_progress="hidden", **private)
        compare_files_button.click(comparer.downloads, comparison, compare_files, **private)
        if on_spaces():  # ZeroGPU: the run is in another process, where only gradio's cancel reaches
            stopping = stop.click(None, cancels=[txt2img_run, img2img_run, edit_run, invert_run, fork_run, compare_run],
                                  **private)
            explained(stopping.then(handlers.finish, trajectory, after, **private))  # a cancelled run never finishes
        else:
            stop.click(handlers.stop, stop_signal, None, concurrency_limit=None, **private)
        schedule_tab.select(explainer.open_schedule, [trajectory, step, opened], [distance_plot, decided, opened],
                            **private)
        forward_tab.select(explainer.open_forward, [trajectory, opened], [*forward_outputs, opened], **private)
        latent_tab.select(explainer.open_latent, [trajectory, opened], [*latent_outputs, opened], **private)
        walk_tab.select(explainer.open_walk, [trajectory, opened], [*walk_panels, opened], **private)
        forward_button.click(explainer.forward, [trajectory, forward_upload], forward_outputs, **private)
        latent_button.click(explainer.latent, [trajectory, latent_upload], latent_outputs, **private)
        downloads_tab.select(handlers.downloads, [trajectory, written], [downloads, written], **private)

        for trigger in (step.change, word.change, resolution.change, span.change):
            trigger(**show)
        step.change(**step_views)
        step.release(explainer.edit_view, [trajectory, step], edit_outputs, concurrency_limit=None,
                     show_progress="hidden", **private)
        playing = play.click(handlers.play, [trajectory, step], step, concurrency_limit=None, show_progress="hidden", **private)
        pause.click(None, cancels=[playing], **private)
        probe.select(handlers.probe, [trajectory, step, probe_resolution], probe, concurrency_limit=None, **private)
        x0_view.change(lambda image: image, x0_view, probe, show_progress="hidden", **private)
        show_layers.click(handlers.layers, [model, width, height, guidance], layer_rows, concurrency_limit=config.concurrency,
                          concurrency_id="model", **private)
        dice.click(random_seed, None, seed, **private)
        model.change(handlers.model_changed, [model, scheduler], [width, height, scheduler, true_cfg, examples],
                     **private)
        examples.input(lambda text: text, examples, prompt, show_progress="hidden", **private)

        # The API: every parameter has a default. /generate returns the final image and the trajectory
        # files; /compare the grid and the comparison's files.
        api_inputs = [prompt, negative, model, scheduler, steps, guidance, seed, width, height, eta, preview, every]
        compare_vary = gr.Textbox(visible=False, label="vary")  # NAME=V1,V2 parts separated by ";"
        compare_align = gr.Textbox(visible=False, value="progress", label="align")  # progress or sigma
        api_source_prompt = gr.Textbox(visible=False, value="", label="source_prompt")  # an edit: what the image shows
        api_source_guidance = gr.Number(visible=False, value=DEFAULTS.source_guidance, label="source_guidance")
        gr.Button(visible=False).click(
            handlers.api_invert, [prompt, negative, model, steps, guidance, seed, width, height, preview, every,
                                  init_image],
            [gr.Image(label="reconstruction", visible=False, format="png"),
             gr.File(label="round_trip.png, error.json, inversion.zip, reconstruction.zip", visible=False,
                     file_count="multiple")],
            api_name="invert", concurrency_limit=config.concurrency, concurrency_id="model", show_progress="hidden")
        for name, fn, extra, image_label, files_label in (
                ("generate", handlers.api_generate, [init_image, strength, api_source_prompt, api_source_guidance,
                                                     true_cfg],
                 "final image", "trajectory files"),
                ("compare", comparer.api, [compare_vary, compare_align], "comparison grid",
                 "compare.json, compare.gif, compare.mp4, compare.html, each variant's trajectory")):
            outputs = [gr.Image(label=image_label, visible=False, format="png"),
                       gr.File(label=files_label, visible=False, file_count="multiple")]
            gr.Button(visible=False).click(fn, api_inputs + extra, outputs, api_name=name,
                                           concurrency_limit=config.concurrency, concurrency_id="model",
                                           show_progress="hidden")
    return demo
