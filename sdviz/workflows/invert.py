"""Inversion, traced: a real image run backwards to noise through the model's own ODE, then forward again.

DDIM's step without noise (eta 0) is deterministic, so it can be taken in reverse: from the image's
latents, each step moves up to the next noise level with the UNet's noise prediction at the current
latents (Song et al., 2021, section 4.3; diffusers' `DDIMInverseScheduler`, run as
`StableDiffusionDiffEditPipeline.invert` runs it). DDIM run forward from the noise it reaches, with the
same prompt and guidance, comes back close to the image. How close depends on the guidance: the reverse
step assumes the noise prediction barely changes between two levels, guidance amplifies its changes,
and the error grows with it (Mokady et al., 2023, "Null-text inversion").

Flow-matching models (SD3, Flux) run their own ODE backwards instead: Euler steps from the image
(sigma 0) up the forward run's sigmas, x + (sigma_next - sigma) v (`sdviz.sampling.schedulers.FlowInverse`),
then flow Euler forward again. SDXL inverts as SD does, with its own conditioning.

    result = sdviz.invert(model, sdviz.Settings(prompt="a rocket on the right", steps=50, guidance=1), image)
    result.inversion, result.reconstruction   # two trajectories, every step kept
    result.psnr, result.vae_psnr              # the reconstruction against the image; the VAE alone
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sdviz.analysis.metrics import psnr
from sdviz.drawing.sheets import round_trip_sheet
from sdviz.sampling.errors import InputError
from sdviz.sampling.settings import Settings
from sdviz.sampling.trajectory import Trajectory


@dataclass
class Inversion:
    """An image inverted to noise, and that noise run forward again with the same prompt and guidance."""

    inversion: Trajectory  # image -> noise (its x_start: the image's latents; its last x_next: the noise)
    reconstruction: Trajectory  # noise -> image, DDIM (flow models: flow Euler)
    vae_psnr: float  # the image through the VAE alone (encoded, decoded): the round trip's reference
    previewers: tuple = field(default=(), repr=False)  # each run's own preview decoder, for frames not kept

    @property
    def image(self) -> np.ndarray:
        return self.inversion.init_image

    @property
    def psnr(self) -> float:
        """The reconstruction against the image, dB."""
        return psnr(self.image, self.reconstruction.final_image)

    @property
    def mean_abs_error(self) -> float:
        """Mean |reconstruction - image| over pixels and channels, on a 0..255 scale."""
        return float(np.mean(np.abs(self.reconstruction.final_image.astype(np.float64) - self.image)))

    @property
    def noise_std(self) -> float:
        """The standard deviation of the noise the inversion reached (1 for the noise a run starts from)."""
        return float(np.std(self.inversion.steps[-1].x_next))

    def round_trip_sheet(self, columns: int = 6):
        """The image to noise (above) and back (below), column by column at the same noise level."""
        return round_trip_sheet(self.inversion, self.reconstruction, self.previewers, columns)

    def summary(self) -> dict:
        settings = self.inversion.settings
        return {"prompt": settings.prompt, "steps": settings.steps, "guidance": settings.guidance,
                "psnr_db": round(self.psnr, 3), "mean_abs_error": round(self.mean_abs_error, 3),
                "vae_psnr_db": round(self.vae_psnr, 3), "noise_std": round(self.noise_std, 4),
                "complete": self.inversion.complete and self.reconstruction.complete}

    def save(self, out: str | Path, page: bool = False, sweep: list[dict] | None = None) -> Path:
        """out/inversion and out/reconstruction (run folders, as `render` writes them, with run.html if
        `page`), out/round_trip.png and out/error.json (with a guidance sweep's rows, if given)."""
        from sdviz.workflows.render import write_run

        out = Path(out)
        previewers = self.previewers or (None, None)
        for name, traj, previewer in (("inversion", self.inversion, previewers[0]),
                                      ("reconstruction", self.reconstruction, previewers[1])):
            write_run(traj, out / name, previewer, page=page and previewer is not None)
        if self.previewers:
            self.round_trip_sheet().save(out / "round_trip.png")
        summary = self.summary() | ({"guidance_sweep": sweep} if sweep else {})
        (out / "error.json").write_text(json.dumps(summary, indent=2) + "\n")
        return out


class Inverting:
    """An inversion as it runs: `runs()` yields the inversion's `Run` (the image to noise), and, once the
    caller has followed it to its end, the reconstruction's (that noise back to an image, with the same
    settings), for the caller to follow (`for record in run`). A stopped inversion is not reconstructed.
    Both runs share the time the inversion's run was given (its `time_limit`); `stop_signal` (an event)
    stops the reconstruction, as the inversion's own stops it.

        inverting = Inverting(Run(model, replace(settings, invert=True), init_image=image))
        for run in inverting.runs():
            for record in run:
                ...
        inverting.result      # an Inversion, once both ended
    """

    def __init__(self, run, reconstruction_capture=None, stop_signal=None):
        self.inversion_run, self.reconstruction_run = run, None
        self.reconstruction_capture, self.stop_signal = reconstruction_capture, stop_signal

    def runs(self):
        import time

        from sdviz.sampling.sampler import Run

        run, limit, started = self.inversion_run, self.inversion_run.time_limit, time.perf_counter()
        yield run
        inversion = run.trajectory
        if not inversion.complete:
            return  # stopped, or out of time: there is no noise to reconstruct from
        left = None if limit is None else max(limit - (time.perf_counter() - started), 0.0)
        self.reconstruction_run = Run(run.model, replace(run.settings, invert=False),
                                      capture=self.reconstruction_capture, stop_signal=self.stop_signal,
                                      time_limit=left, start_latents=inversion.steps[-1].x_next)
        yield self.reconstruction_run

    @property
    def result(self) -> Inversion:
        """The inversion and its reconstruction, with the VAE's own round trip measured."""
        if self.reconstruction_run is None:
            raise InputError.said("error.inversion_stopped", done=len(self.inversion_run.trajectory.steps),
                                  steps=self.inversion_run.settings.steps)
        runs = (self.inversion_run, self.reconstruction_run)
        return inversion_of(self.inversion_run.model, *(run.trajectory for run in runs),
                            tuple(run.previewer for run in runs))


def inversion_of(model, inversion: Trajectory, reconstruction: Trajectory, previewers: tuple = ()) -> Inversion:
    """The Inversion of two runs, with the image's own VAE round trip measured as its reference."""
    from sdviz.analysis.forward import latent_space

    width, height = inversion.settings.width, inversion.settings.height
    return Inversion(inversion, reconstruction, latent_space(model, inversion.init_image, width, height).psnr,
                     previewers)


def invert(model, settings: Settings, image, capture=None, reconstruction_capture=None, callback=None,
           stop_signal=None) -> Inversion:
    """`image` inverted with `settings` (prompt, negative prompt, steps, guidance, seed, size; DDIM, eta 0;
    flow models: flow Euler), then reconstructed from the noise it reaches with the same settings.
    callback(phase, record) is called at every step, phase "inversion" or "reconstruction". A stop signal
    ends the phase in flight after its step; a stopped inversion is not reconstructed."""
    from sdviz.sampling.sampler import Run

    settings = replace(settings, scheduler=None, eta=0.0, invert=True)  # the scheduler the model's family reverses
    inverting = Inverting(Run(model, settings, init_image=image, capture=capture, stop_signal=stop_signal),
                          reconstruction_capture, stop_signal)
    for phase, run in zip(("inversion", "reconstruction"), inverting.runs()):
        for record in run:
            if callback is not None:
                callback(phase, record)
    return inverting.result


def guidance_sweep(model, settings: Settings, image, guidances) -> list[dict]:
    """The reconstruction error for each guidance value (the rest of the settings kept)."""
    return [invert(model, replace(settings, guidance=float(g)), image).summary() for g in guidances]
