"""The page: inputs on the left, the live run on the right, the explorer below.

`build_demo(config, session)` places each part by its tab's builder (`ui.tabs`), hands them what they
share, and wires what follows a run across the tabs; every handler works over the session service
(`ui.session`) and the core.
"""

from __future__ import annotations

import gradio as gr

from sdviz.messages import LANGUAGES
from sdviz.sampling.checks import check_choice
from ui import api, html, words
from ui.errors import Page
from ui.tabs import attention, compare, downloads, explain, explore, path, run
from ui.tabs.shared import AGAIN, PRIVATE, Shared, States, refused
from ui.words import say


def _blank_shapes(facts) -> dict:
    """The diagram's shapes before any run: the default model's at its native size."""
    height, width = facts.native_height, facts.native_width
    return {"token_embeddings": list(facts.token_shape()), "latents": list(facts.latent_shape(height, width)),
            "image": list(facts.image_shape(height, width))}


def build_demo(config, session) -> gr.Blocks:
    """The page over `session` (ui.session.Session), for the host's `config` (ui.config.AppConfig)."""
    default_model = session.model(config.default_name)
    default = default_model.facts
    runner, explorer = run.RunHandlers(session), explore.ExploreHandlers(session)
    comparer, explainer = compare.CompareHandlers(session), explain.ExplainHandlers(session)
    attending, downloader = attention.AttentionHandlers(session), downloads.DownloadHandlers(session)

    words.listen()  # the server writes in each session's language
    with Page(title="sdviz: watch Stable Diffusion denoise") as demo:  # files: ui.files prunes them
        with gr.Row(equal_height=True):
            gr.Markdown(say("page.header"))
            language = words.switch()
        diagram = gr.HTML(html.diagram(_blank_shapes(default), default, "", default.scheduler), elem_id="diagram")
        states = States.create()
        with gr.Row():
            with gr.Column(scale=2):
                inputs = run.build_inputs(config, default_model)
            with gr.Column(scale=3):
                live = run.build_live(diagram, session)
        row = explore.build_step_row()
        shared = Shared(states, run.form(inputs, states, row.step, live.token), live.status, row.step,
                        config.admitted)
        with gr.Tabs():
            with gr.Tab(say("tab.explore")):
                explored = explore.build()
                pathed = path.build()
            with gr.Tab(say("tab.compare"), elem_id="compare-tab"):
                compare_run = compare.build(comparer, shared, inputs.prompt, inputs.settings.model)
            schedule = explain.build_schedule(explainer, shared)
            forward = explain.build_forward(explainer, shared)
            latent = explain.build_latent(explainer, shared)
            attended = attention.build(attending, shared, inputs.settings, explored.x0_view)
            walk_panels = explain.build_walk(explainer, shared)
            files = downloads.build(downloader, shared)
        panels = explain.ExplainPanels(schedule, forward, latent, walk_panels)

        # --- the runs, and what follows each across the tabs -------------------------------------
        runs = run.wire(runner, inputs, live, shared)
        fork_run = shared.start(explored.fork, runner.stream_fork, "stop_signal", "parent", "step", "prompt",
                                "negative_prompt", "guidance", "eta", "preview", "every", "attention",
                                outputs=[*live.outputs(states), states.parent])
        path_steps = path.wire(path.PathHandlers(session), pathed, states.trajectory, states.parent, row.step,
                               attended.span, explored.x0_view, [*runs.all(), fork_run])
        steps = explore.wire(explorer, explored, row, shared, attended, schedule.plots, runs, fork_run,
                             also=path_steps.parts, moves=path_steps.moves)
        after = [row.step, attended.tokens, attended.word, attended.resolution, attended.probe_resolution, files,
                 states.written]

        def explained(event):
            """After a run: the explorer, the step's explaining panels, and the explaining tabs this
            session has opened."""
            explain.redraw_opened(explainer, panels, shared, steps.after(event))

        for event in (*runs.all(), fork_run):
            explained(event.success(explorer.finish, states.trajectory, after, **AGAIN, **PRIVATE))
            event.failure(refused, None, live.status, show_progress="hidden", **PRIVATE)
        stopping = run.wire_stop(inputs.stop, runner, [*runs.all(), fork_run, compare_run])
        if stopping is not None:  # ZeroGPU: a cancelled run never finishes
            explained(stopping.then(explorer.finish, states.trajectory, after, **PRIVATE))

        api.build(api.ApiHandlers(session, runner, explorer, downloader), comparer.api, inputs, config.admitted)
        wire_language(demo, language)
    return demo


def wire_language(demo: gr.Blocks, language: gr.Radio) -> None:
    """The page's texts in the session's language when it loads (its browser's), and again when the reader
    picks another with the switch; the server's later texts follow the same choice (`ui.words`)."""
    page = words.Words(demo)

    def loaded(request: gr.Request):
        chosen = words.session_language(request)
        return chosen, *page.relabel(chosen)

    def picked(chosen, request: gr.Request):
        chosen = check_choice("language", chosen, tuple(LANGUAGES))
        words.choose(request.session_hash, chosen)
        return page.relabel(chosen)

    demo.load(loaded, None, [language, *page.components], show_progress="hidden", **PRIVATE)
    language.input(picked, language, page.components, show_progress="hidden", **PRIVATE)
