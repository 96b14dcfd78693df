"""The per-step record and the trajectory: everything a run produced, on the CPU.

One `StepRecord` per entry of the scheduler's timesteps (k-diffusion's
callback dict, with x0 as a first-class field) and one `Trajectory` holding the
settings, the model's facts and every record. Renderers, exporters, the CLI
and the app all read these; they save to a folder and load back without loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sdviz.sampling.errors import InputError
from sdviz.sampling.models import ModelFacts
from sdviz.sampling.saved import FORMAT, read_run
from sdviz.sampling.settings import RunSettings

LATENT_FIELDS = ("x_t", "x_next", "noise_uncond", "noise_cond", "noise_pred", "x0_pred", "source_x_next", "denoised")
GUIDANCE_X0 = ("x0_uncond", "x0_cond")  # computed from the above; saved with them


@dataclass
class StepRecord:
    """One scheduler entry. Latents are float32 (C, h, w) at UNet scale; frames uint8 (H, W, 3)."""

    index: int  # position in the scheduler's timesteps, from 0
    timestep: float  # the timestep the UNet was given
    sigma: float  # noise level of this evaluation, sqrt((1 - alpha_bar) / alpha_bar)
    x_t: np.ndarray  # sample entering the step, in the scheduler's own form
    x_next: np.ndarray  # sample step() returned
    next_vp_scale: float  # x_next * this is its variance-preserving form (1 for VP schedulers)
    noise_uncond: np.ndarray | None  # UNet output for the negative/empty prompt (None without guidance)
    noise_cond: np.ndarray | None  # UNet output for the prompt (None without guidance)
    noise_pred: np.ndarray | None  # guided output the scheduler stepped with (None once released, see
    # sdviz.workflows.compare.keep_shown)
    x0_pred: np.ndarray  # predicted clean latents
    x0_slope: float | None = None  # d x0 / d UNet output at this step (sdviz.sampling.noise.x0_slope)
    eta: float = 0.0  # the eta this step was taken with (a fork's steps may differ from its parent's)
    source_x_next: np.ndarray | None = None  # an edit: the source image's latents after this step
    denoised: np.ndarray | None = None  # LCM's scheduler: the boundary-conditioned c_skip·x_t + c_out·x0 it steps
    # from (not x0: x0_pred is the model's own estimate at this step's noise level)
    x_t_image: np.ndarray | None = None  # decoded x_next (VP form); None on undecoded steps, or once released
    x0_image: np.ndarray | None = None  # decoded x0_pred
    seconds: float = 0.0  # wall time of the step, decode included
    decoded: bool = False  # the run decoded this step's frames (every N steps, and the last); set from x_t_image

    def __post_init__(self):
        self.decoded = self.decoded or self.x_t_image is not None

    # x0 is linear in the UNet's output, so each half of the guidance batch has its own x0 by the same
    # formula as x0_pred, and x0_pred = x0_uncond + g (x0_cond - x0_uncond); computed when asked for,
    # so a session holds no more latents for them.

    @property
    def x0_uncond(self) -> np.ndarray | None:
        """x0 from the empty (negative) prompt's noise prediction alone; None without guidance."""
        return self._x0_of(self.noise_uncond)

    @property
    def x0_cond(self) -> np.ndarray | None:
        """x0 from the prompt's noise prediction alone; None without guidance."""
        return self._x0_of(self.noise_cond)

    def _x0_of(self, output: np.ndarray | None) -> np.ndarray | None:
        if output is None or self.x0_slope is None:
            return None
        return self.x0_pred + np.float32(self.x0_slope) * (output - self.noise_pred)


@dataclass
class Trajectory:
    """A run from noise to image: settings, model facts, and every step's record."""

    settings: RunSettings
    facts: ModelFacts
    shapes: dict[str, list[int]]  # token_embeddings, latents, image: this run's real tensor shapes
    tokens: dict[str, Any]  # TokenView.to_dict(), plus "others": the other text encoders' views (SDXL, SD3, Flux)
    x_start: np.ndarray  # starting latents, scheduler form (noise, or noised init image)
    noise_image: np.ndarray | None = None  # decoded starting latents (VP form)
    init_image: np.ndarray | None = None  # img2img input as used (resized), uint8
    steps: list[StepRecord] = field(default_factory=list)
    final_image: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    complete: bool = False
    attention: Any = None  # sdviz.sampling.attention.AttentionMaps when captured
    distance_to_final: dict[str, list[float]] | None = None  # per step, x0 and x_t: see sdviz.analysis.forward
    frame_cache: Any = field(default=None, repr=False)  # sdviz.sampling.frames.FrameCache once frames are released
    model_ref: Any = field(default=None, repr=False, compare=False)  # weakref.ref to the model that ran it, so a
    # view can decode its frames again (`decoder`); not saved and not pickled, and never keeps the model alive

    def __repr__(self) -> str:
        """One line: the prompt, the model, the scheduler, the steps run and the size (a notebook shows the
        run's page from the HTML formatter `sdviz.notebook` registers)."""
        s = self.settings
        prompt = s.prompt if len(s.prompt) <= 40 else s.prompt[:39] + "…"
        done = f"{len(self.steps)} steps" + ("" if self.complete else f" (incomplete, of {s.steps})")
        return (f"<sdviz.Trajectory {prompt!r} · {s.model} · {s.scheduler} · {done} · {s.width}x{s.height} · "
                f"seed {s.seed}>")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model_ref": None}  # a weak reference does not pickle; the copy decodes nothing

    def decoder(self):
        """The run's preview decoder (`Previewer`) while its model is loaded; None once it is not (or for a run
        loaded from a folder)."""
        model = self.model_ref() if self.model_ref is not None else None
        if model is None:
            return None
        from sdviz.sampling.previews import Previewer  # torch: only where a model is loaded anyway

        return Previewer.of(model, self.settings)

    @property
    def guidance_scale(self) -> float:
        """The classifier-free guidance scale that mixed the two halves (Flux: `true_cfg`; its `guidance` is an
        input of the transformer, not a mix)."""
        return float(self.settings.true_cfg if self.facts.family == "flux" else self.settings.guidance)

    @property
    def prediction_label(self) -> str:
        """What the denoiser's output (`noise_pred`) is, in words: the noise, or v (SD 2.x's v-prediction, or
        flow matching's velocity)."""
        return {"v_prediction": "predicted v (√ᾱ·ε − √(1−ᾱ)·x0)", "flow": "predicted velocity v = ε − x0",
                "sample": "predicted x0"}.get(self.facts.prediction_type, "predicted noise ε")

    @property
    def image_tokens(self) -> int:
        """The run's image positions in the denoiser's attention (SD3's and Flux's schedules shift with them)."""
        return self.facts.image_tokens(self.settings.height, self.settings.width)

    @property
    def denoiser_word(self) -> str:
        """What the page calls the model's denoiser: 'UNet' or 'transformer'."""
        return "transformer" if self.facts.denoiser == "transformer" else "UNet"

    # --- frames: pictures of the latents, decoded again when not kept -------------------------

    def step_frames(self, index: int, previewer=None) -> tuple[np.ndarray, np.ndarray]:
        """Step `index`'s x_t and x0 frames, uint8 (H, W, 3): from its record, else the frame cache,
        else decoded again from its latents by the run's `previewer` (`Previewer.record_frames`) and cached.

        Any step can be shown this way, decoded by the run or not.
        """
        record = self.steps[index]
        if record.x_t_image is not None:
            return record.x_t_image, record.x0_image
        cached = self.frame_cache.get(index) if self.frame_cache is not None else None
        if cached is not None:
            return cached
        if previewer is None:
            raise InputError.said("error.frames_not_kept", step=index + 1)
        frames = previewer.record_frames(record, self.complete and index == len(self.steps) - 1)
        if self.frame_cache is not None:
            self.frame_cache.put(index, frames)
        return frames

    def with_frames(self, previewer=None) -> Trajectory:
        """A copy whose decoded steps hold their frames again (for the exporters); this one is unchanged."""
        steps = [replace(s, x_t_image=None, x0_image=None) for s in self.steps]
        for index, step in enumerate(steps):
            if step.decoded:
                step.x_t_image, step.x0_image = self.step_frames(index, previewer)
        return replace(self, steps=steps, frame_cache=None)

    def _require_frames(self, refusal: str) -> None:
        """Refuses (the catalogue's `refusal`) to read or save frames this trajectory no longer holds."""
        if any(s.x_t_image is None for s in self.decoded_steps()):
            raise InputError.said(refusal)

    def nbytes(self) -> dict[str, int]:
        """Bytes held, by kind: latents (each array once: a step's x_t is the step before's x_next),
        frames (in records and the cache), images (noise, init, final), attention maps."""
        seen: set[int] = set()

        def size(array) -> int:
            if not isinstance(array, np.ndarray) or id(array) in seen:
                return 0
            seen.add(id(array))
            return array.nbytes

        latents = size(self.x_start) + sum(size(getattr(s, name)) for s in self.steps for name in LATENT_FIELDS)
        frames = sum(size(s.x_t_image) + size(s.x0_image) for s in self.steps)
        frames += self.frame_cache.nbytes if self.frame_cache is not None else 0
        images = sum(size(getattr(self, name)) for name in ("noise_image", "init_image", "final_image"))
        attention = self.attention.nbytes if self.attention is not None else 0
        return {"latents": latents, "frames": frames, "images": images, "attention": attention}

    # --- reading -----------------------------------------------------------------

    def decoded_steps(self) -> list[StepRecord]:
        return [s for s in self.steps if s.decoded]

    def frames(self, kind: str = "x_t") -> list[tuple[str, np.ndarray]]:
        """(label, frame) from the starting noise to the last decoded step.

        kind 'x_t' starts with the noise; 'x0' has only the steps. Labels are
        the number of steps done ('noise', '1', ... 'N').
        """
        self._require_frames("error.frames_released_read")
        out = []
        if kind == "x_t" and self.noise_image is not None:
            out.append(("noise", self.noise_image))
        for step in self.decoded_steps():
            image = step.x_t_image if kind == "x_t" else step.x0_image
            out.append((str(step.index + 1), image))
        return out

    def step_summary(self, step: StepRecord) -> dict[str, Any]:
        def stats(array: np.ndarray) -> dict[str, float]:
            return {k: round(float(f(array)), 6) for k, f in
                    (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max))}

        return {
            "index": step.index,
            "timestep": step.timestep,
            "sigma": step.sigma,
            "next_vp_scale": step.next_vp_scale,
            "x0_slope": step.x0_slope,
            "eta": step.eta,
            "seconds": step.seconds,
            "decoded": step.decoded,
            "x_t": stats(step.x_next),
            "x0_pred": stats(step.x0_pred),
            "noise_pred": stats(step.noise_pred),
        }

    # --- saving and loading --------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "settings": self.settings.to_dict(),
            "facts": self.facts.to_dict(),
            "shapes": self.shapes,
            "tokens": self.tokens,
            "timings": self.timings,
            "warnings": self.warnings,
            "complete": self.complete,
            "steps": [self._summary(n, s) for n, s in enumerate(self.steps)],
        }

    def _summary(self, n: int, step: StepRecord) -> dict[str, Any]:
        summary = self.step_summary(step)
        if self.distance_to_final is not None:
            summary["distance_to_final"] = {kind: self.distance_to_final[kind][n] for kind in ("x0", "x_t")}
        return summary

    def save(self, folder: str | Path) -> Path:
        """Writes trajectory.json, latents.npz and frames.npz (and attention.npz) into folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "trajectory.json").write_text(json.dumps(self.to_json(), indent=1) + "\n")
        latents = {"x_start": self.x_start}
        if self.steps:
            for name in LATENT_FIELDS:
                values = [getattr(s, name) for s in self.steps]
                if all(v is not None for v in values):
                    latents["x_t" if name == "x_next" else "x_t_in" if name == "x_t" else name] = np.stack(values)
            for name in GUIDANCE_X0:
                values = [getattr(s, name) for s in self.steps]
                if all(v is not None for v in values):
                    latents[name] = np.stack(values)
        np.savez_compressed(folder / "latents.npz", **latents)
        decoded = self.decoded_steps()
        self._require_frames("error.frames_released_save")
        frames: dict[str, np.ndarray] = {"frame_steps": np.array([s.index for s in decoded], np.int64)}
        if decoded:
            frames["x_t"] = np.stack([s.x_t_image for s in decoded])
            frames["x0"] = np.stack([s.x0_image for s in decoded])
        for name in ("noise_image", "init_image", "final_image"):
            if getattr(self, name) is not None:
                frames[name] = getattr(self, name)
        np.savez_compressed(folder / "frames.npz", **frames)
        if self.attention is not None:
            self.attention.save(folder / "attention.npz")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Trajectory:
        """The run `save` wrote into `folder`, read against the schema of `sdviz.sampling.saved`: a saved run is
        someone's file, so any fault in it (a corrupt or truncated file, a field mistyped or out of range, an
        array of the wrong dtype or shape, a link leading out of the folder) is an InputError of one line naming
        the file and the field. Links within the folder are followed."""
        saved = read_run(folder)
        meta, latents, frames = saved.meta, saved.latents, saved.frames
        decoded_at = {int(i): n for n, i in enumerate(frames["frame_steps"])}
        facts = ModelFacts.from_dict(meta["facts"])
        settings = RunSettings.from_dict(meta["settings"])
        steps = [_loaded_step(n, summary, latents, frames, decoded_at.get(n), facts.prediction_type, settings.eta)
                 for n, summary in enumerate(meta["steps"])]
        distances = None
        if meta["steps"] and "distance_to_final" in meta["steps"][0]:
            distances = {kind: [s["distance_to_final"][kind] for s in meta["steps"]] for kind in ("x0", "x_t")}
        attention = None
        if saved.attention is not None:
            from sdviz.sampling.attention import AttentionMaps

            shapes = meta["shapes"]
            attention = AttentionMaps.load(saved.attention, steps=len(steps), latent_hw=tuple(shapes["latents"][1:]),
                                           image_hw=tuple(shapes["image"][1:]), tokens=len(meta["tokens"]["slots"]))
        return cls(
            settings=settings,
            facts=facts,
            shapes=meta["shapes"],
            tokens=meta["tokens"],
            x_start=latents["x_start"],
            noise_image=frames.get("noise_image"),
            init_image=frames.get("init_image"),
            steps=steps,
            final_image=frames.get("final_image"),
            timings=meta["timings"],
            warnings=meta["warnings"],
            complete=meta["complete"],
            attention=attention,
            distance_to_final=distances,
        )


def _loaded_step(n: int, summary: dict[str, Any], latents: dict[str, np.ndarray], frames: dict[str, np.ndarray],
                 frame: int | None, prediction_type: str, eta: float) -> StepRecord:
    """Step `n` of a loaded run from its checked summary and arrays (`frame`: its row in frames.npz, if decoded)."""
    from sdviz.sampling.noise import x0_slope

    def latent(name: str) -> np.ndarray | None:
        return latents[name][n] if name in latents else None

    return StepRecord(
        index=summary["index"],
        timestep=summary["timestep"],
        sigma=summary["sigma"],
        x_t=latents["x_t_in"][n],
        x_next=latents["x_t"][n],
        next_vp_scale=summary["next_vp_scale"],
        noise_uncond=latent("noise_uncond"),
        noise_cond=latent("noise_cond"),
        noise_pred=latents["noise_pred"][n],
        x0_pred=latents["x0_pred"][n],
        x0_slope=summary.get("x0_slope", x0_slope(summary["sigma"], prediction_type)),
        eta=summary.get("eta", eta),
        source_x_next=latent("source_x_next"),
        denoised=latent("denoised"),
        x_t_image=frames["x_t"][frame] if frame is not None else None,
        x0_image=frames["x0"][frame] if frame is not None else None,
        seconds=summary["seconds"],
    )
