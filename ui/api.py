"""The API: /generate, /compare and /invert, hidden from the page. Every parameter has a default; each
endpoint runs to the end and returns an image and files. /generate returns the final image and the
trajectory files (as the Downloads tab writes them); /compare the grid and the comparison's files
(ui.tabs.compare); /invert the reconstruction and the round trip's files.

Each handler is a generator: a client that cancels or goes away stops the run (see ui.streaming).
"""

from __future__ import annotations

import asyncio
import json

import gradio as gr

from sdviz.messages import text
from sdviz.sampling.checks import check_text
from sdviz.sampling.errors import InputError
from sdviz.sampling.settings import Settings
from sdviz.workflows.render import write_trajectory_zip
from ui import components
from ui.errors import user_errors
from ui.streaming import follow
from ui.tabs.run import DISPLAY_RATE, TRAJECTORY
from ui.zerogpu import iterate

DEFAULTS = Settings()


def build(handlers: ApiHandlers, compare, inputs, concurrency: int) -> None:
    """The endpoints, on the run column's widgets (`inputs`, ui.tabs.run.RunInputs) and hidden ones of their
    own; `compare`: the Compare tab's handler of /compare. They queue on the model's concurrency."""
    s = inputs.settings
    api_inputs = [inputs.prompt, inputs.negative, s.model, s.scheduler, s.steps, s.guidance, s.seed, s.width,
                  s.height, s.eta, s.preview, s.every]
    compare_vary = components.Textbox(visible=False, label="vary")  # NAME=V1,V2 parts separated by ";"
    compare_align = components.Textbox(visible=False, value="progress", label="align")  # progress or sigma
    # an edit: what the image shows
    api_source_prompt = components.Textbox(visible=False, value="", label="source_prompt")
    api_source_guidance = components.Number(visible=False, value=DEFAULTS.source_guidance, label="source_guidance")
    queued = dict(concurrency_limit=concurrency, concurrency_id="model", show_progress="hidden")
    gr.Button(visible=False).click(
        handlers.invert, [inputs.prompt, inputs.negative, s.model, s.steps, s.guidance, s.seed, s.width, s.height,
                          s.preview, s.every, inputs.init_image],
        [gr.Image(label="reconstruction", visible=False, format="png"),
         gr.File(label="round_trip.png, error.json, inversion.zip, reconstruction.zip", visible=False,
                 file_count="multiple"), gr.Textbox(label="status", visible=False)],
        api_name="invert", **queued)
    for name, fn, extra, image_label, files_label in (
            ("generate", handlers.generate, [inputs.init_image, inputs.strength, api_source_prompt,
                                             api_source_guidance, s.true_cfg],
             "final image", "trajectory files"),
            ("compare", compare, [compare_vary, compare_align], "comparison grid",
             "compare.json, compare.gif, compare.mp4, compare.html, each variant's trajectory")):
        outputs = [gr.Image(label=image_label, visible=False, format="png"),
                   gr.File(label=files_label, visible=False, file_count="multiple"),
                   gr.Textbox(label="status", visible=False)]  # finished, or cut short by the run-time limit
        gr.Button(visible=False).click(fn, api_inputs + extra, outputs, api_name=name, **queued)


class ApiHandlers:
    """/generate and /invert, over the session and the page's own handlers: the run column's streams, the
    explorer's round trip and the Downloads tab's writer."""

    def __init__(self, session, runs, explorer, downloads):
        self.session, self.files, self.threads = session, session.files, session.threads
        self.runs, self.explorer, self.downloads = runs, explorer, downloads

    @user_errors
    async def generate(self, prompt, negative_prompt, model, scheduler, steps, guidance, seed, width, height,
                       eta, preview, every, init_image=None, strength=0.8, source_prompt="", source_guidance=1.0,
                       true_cfg=1.0):
        """Runs to the end; returns the final image, the trajectory files and the status ("finished: N steps",
        or cut short by the run-time limit, naming it). A source prompt (with an image) makes it an edit;
        true_cfg (Flux) real guidance with the negative prompt.

        A generator, so that a client that cancels or goes away stops the run (see ui.streaming).
        """
        deadline = self.session.limits.deadline()  # the request's: its files are written until then
        source_prompt = check_text("source prompt", source_prompt if source_prompt is not None else "")
        run = self.session.build_run(model, False, init_image, img2img=init_image is not None, prompt=prompt,
                                     negative_prompt=negative_prompt, scheduler=scheduler, steps=steps,
                                     guidance=guidance, seed=seed, width=width, height=height, eta=eta,
                                     preview=preview, every=every, strength=strength,
                                     source_prompt=source_prompt or None, source_guidance=source_guidance,
                                     true_cfg=true_cfg)
        yield gr.skip(), gr.skip(), gr.skip()
        async for _ in follow(run, iterate, 1 / DISPLAY_RATE, self.threads):
            yield gr.skip(), gr.skip(), gr.skip()
        traj = run.trajectory
        final = self.files.image(traj.final_image) if traj.final_image is not None else None
        files, left = await asyncio.to_thread(self.downloads.write, traj, deadline)
        limits = self.session.limits
        status = "; ".join(filter(None, [limits.cut_short([traj]), limits.files_left_out(left)]))
        yield final, files, status or text("status.finished", steps=len(traj.steps))

    @user_errors
    async def invert(self, prompt, negative_prompt, model, steps, guidance, seed, width, height, preview, every,
                     image):
        """Inversion and reconstruction, run to the end as the page streams them; returns the
        reconstructed image, round_trip.png, error.json and both runs' trajectory zips, and the status."""
        deadline = self.session.limits.deadline()  # the request's: its files are written until then
        if image is None:
            raise InputError.said("error.invert_no_image")
        last = None
        async for update in self.runs.stream_invert(prompt=prompt, negative_prompt=negative_prompt, model=model,
                                                    steps=steps, guidance=guidance, seed=seed, width=width,
                                                    height=height, preview=preview, every=every, init_image=image):
            last = update
            yield gr.skip(), gr.skip(), gr.skip()
        reconstruction, inversion = last[TRAJECTORY], last[TRAJECTORY + 1]
        if inversion is None or not reconstruction.complete:
            runs = [reconstruction] if inversion is None else [inversion, reconstruction]
            labels = [text("sheet.inversion"), text("sheet.reconstruction")][:len(runs)]
            raise InputError.said("error.invert_cut_short", cut=self.session.limits.cut_short(runs, labels))
        files, left = await asyncio.to_thread(self._write_round_trip, inversion, reconstruction, deadline)
        finished = text("status.finished_each_way", steps=len(inversion.steps))
        status = self.session.limits.files_left_out(left) or finished
        yield self.files.image(reconstruction.final_image), files, status

    def _write_round_trip(self, inversion, reconstruction, deadline=None) -> tuple[list[str], list[str]]:
        folder = self.files.new_folder()
        sheet, result = self.explorer.round_trip(inversion, reconstruction)
        sheet.save(folder / "round_trip.png")
        (folder / "error.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
        files, left = [str(folder / "round_trip.png"), str(folder / "error.json")], []
        for name, traj in (("inversion", inversion), ("reconstruction", reconstruction)):
            if deadline is not None and deadline.passed():
                left.append(f"{name}.zip")
                continue
            decoded = traj.with_frames(self.session.decoder(traj))
            files.append(str(write_trajectory_zip(decoded, folder / f"{name}.zip")))
        return files, left
