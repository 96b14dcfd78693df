"""The views that explain a run, computed from the run itself (*The Illustrated Stable Diffusion*'s
figures, drawn live): guidance decomposed, the forward process, where the picture is decided,
and the latent space.

    guidance_frames(previewer, record)   x0 from the empty (negative) prompt and from the prompt
    prompt_effect(uncond, cond)          what the prompt adds, as a signed colour map
    guidance_example(record, g)          the guidance formula with this run's numbers
    forward_process(model, image, ...)   q(x_t | x0) at a schedule's noise levels, decoded
    distance_to_final(trajectory, ...)   how far each step's x0 and x_t still are from the image
    latent_space(model, image)           an image to its latents and back, with the numbers

Every function reads the model's own components (the VAE, the scheduler config), never
sizes written here; decoding is the caller's preview decoder, off the sampling loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SETTLED_DISTANCE = 0.05  # the layout has settled once x0 stays this close to the final image (mean |diff| of 1)


# --- guidance, decomposed ----------------------------------------------------------------

def guidance_frames(previewer, record) -> tuple[np.ndarray, np.ndarray]:
    """The decoded x0 of the unconditional (negative) half and of the prompt's half, uint8 (H, W, 3).

    Decoded as one batch of two with the run's preview decoder; a run without guidance has no halves.
    """
    import torch

    if record.x0_uncond is None:
        raise ValueError("this run has no guidance (guidance scale <= 1): there is one x0, not three")
    model = previewer.model
    batch = torch.from_numpy(np.stack([record.x0_uncond, record.x0_cond])).to(model.device, model.dtype)
    frames = previewer.decode(batch)
    return frames[0], frames[1]


def prompt_effect(uncond: np.ndarray, cond: np.ndarray) -> tuple[np.ndarray, float]:
    """x0_cond - x0_uncond in pixels, averaged over RGB, as a signed colour map: red where the
    prompt brightens, blue where it darkens, white where it changes nothing; scaled so the largest
    change is full colour. Returns (uint8 (H, W, 3), that largest change in [0, 1] units)."""
    change = (cond.astype(np.float32) - uncond.astype(np.float32)).mean(axis=2) / 255.0  # (H, W) in [-1, 1]
    peak = float(np.abs(change).max())
    scaled = change / peak if peak > 0 else change
    positive, negative = np.clip(scaled, 0, 1), np.clip(-scaled, 0, 1)
    rgb = np.stack([1 - negative, 1 - positive - negative, 1 - positive], axis=2)
    return (rgb * 255).round().clip(0, 255).astype(np.uint8), peak


def guidance_example(record, guidance: float) -> dict[str, float]:
    """The guidance formula at the latent value the prompt changes most at this step:
    x0 = x0_uncond + g (x0_cond - x0_uncond), with the mean |x0_cond - x0_uncond| over all values."""
    if record.x0_uncond is None:
        raise ValueError("this run has no guidance (guidance scale <= 1): there is one x0, not three")
    difference = record.x0_cond - record.x0_uncond
    channel, y, x = np.unravel_index(int(np.abs(difference).argmax()), difference.shape)
    uncond, cond = float(record.x0_uncond[channel, y, x]), float(record.x0_cond[channel, y, x])
    return {"guidance": float(guidance), "channel": int(channel), "y": int(y), "x": int(x),
            "uncond": uncond, "cond": cond, "guided": float(record.x0_pred[channel, y, x]),
            "formula": uncond + guidance * (cond - uncond),
            "mean_difference": float(np.abs(difference).mean()),
            "mean_guided_difference": float(np.abs(record.x0_pred - record.x0_uncond).mean())}


# --- the forward process -------------------------------------------------------------------

@dataclass
class ForwardProcess:
    """An image noised to a schedule's levels: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (flow
    matching: (1 - sigma) x0 + sigma eps), one eps for every level (the amounts differ, not the noise).
    Latents at the denoiser's scale, (C, h, w)."""

    timesteps: np.ndarray  # (N,) the schedule's timesteps
    sigmas: np.ndarray  # (N,)
    alpha_bar: np.ndarray  # (N,)
    x0: np.ndarray  # (C, h, w) the image's latents
    noise: np.ndarray  # (C, h, w) eps
    x_t: np.ndarray  # (N, C, h, w) what the denoiser sees: variance-preserving, or flow's interpolation
    frames: list[np.ndarray]  # (N,) decoded x_t, uint8 (H, W, 3)
    image: np.ndarray  # uint8 (H, W, 3): the image as encoded

    def save(self, folder) -> list:
        """forward.npz (timesteps, sigmas, alpha_bar, x0, noise, x_t) and forward/NNN.png."""
        from pathlib import Path

        from PIL import Image

        from sdviz.export import step_file

        folder = Path(folder)
        (folder / "forward").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "forward.npz", timesteps=self.timesteps, sigmas=self.sigmas,
                            alpha_bar=self.alpha_bar, x0=self.x0, noise=self.noise, x_t=self.x_t)
        written = [folder / "forward.npz"]
        for index, frame in enumerate(self.frames):
            written.append(folder / "forward" / step_file(index, len(self.frames)))
            Image.fromarray(frame).save(written[-1])
        return written


def encode_image(model, image, width: int | None = None, height: int | None = None):
    """An image (path, PIL, array) resized to the model's size and encoded by its VAE: (uint8 image,
    latents (1, C, h, w) at the denoiser's scale, the distribution's mean, as a torch tensor on the model's device)."""
    import torch

    from sdviz.images import prepare_init_image
    from sdviz.previews import from_vae_latents
    from sdviz.settings import Settings

    size = Settings(width=width, height=height).resolved(model.facts)  # checked against the VAE factor
    picture = prepare_init_image(image, size.width, size.height)
    pixels = model.pipe.image_processor.preprocess(picture).to(model.device, model.vae.dtype)  # (1, 3, H, W)
    with torch.no_grad():
        latents = from_vae_latents(model.vae, model.vae.encode(pixels).latent_dist.mode())
    return np.asarray(picture), latents.to(model.dtype)


def forward_process(model, image, scheduler: str | None = None, steps: int = 20, seed: int = 0,
                    preview: str = "full", levels: list[int] | None = None, width: int | None = None,
                    height: int | None = None) -> ForwardProcess:
    """The training example of the post from real data: `image` encoded (at width x height, default the
    model's native size), then noised to each noise level of `scheduler`'s `steps`-step schedule (the
    levels a run of those settings starts each step at); `levels`, if given, picks entries by index."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    from sdviz.noise import mix_coefficients
    from sdviz.previews import Previewer
    from sdviz.schedule import schedule_table

    from sdviz.schedulers import check_fits

    facts = model.facts
    scheduler = check_fits(scheduler or facts.scheduler, facts.family)  # the model's own, by default
    picture, x0 = encode_image(model, image, width, height)
    table = schedule_table(scheduler, steps, model.scheduler_config, facts.family,
                           facts.image_tokens(picture.shape[0], picture.shape[1]))
    if levels is not None:
        table = [table[k] for k in levels]
    eps = randn_tensor(x0.shape, generator=torch.Generator("cpu").manual_seed(int(seed)), device=model.device,
                       dtype=x0.dtype)
    coefficients = [mix_coefficients(r["sigma"], facts.prediction_type == "flow") for r in table]
    x_t = torch.cat([alpha * x0 + s * eps for alpha, s in coefficients])  # (N, C, h, w)
    previewer = Previewer(model, preview, picture.shape[0], picture.shape[1])
    frames = [frame for batch in x_t.split(8) for frame in previewer.decode(batch)]
    return ForwardProcess(
        timesteps=np.array([r["timestep"] for r in table], np.float64),
        sigmas=np.array([r["sigma"] for r in table], np.float64),
        alpha_bar=np.array([r["alpha_bar"] for r in table], np.float64),
        x0=x0[0].float().cpu().numpy(), noise=eps[0].float().cpu().numpy(), x_t=x_t.float().cpu().numpy(),
        frames=frames, image=picture,
    )


def img2img_start(steps: int, strength: float, order: int = 1, flow: bool = False) -> int:
    """The index in a `steps`-step schedule where an img2img run of `strength` starts, as diffusers'
    `get_timesteps` counts: SD's runs the last int(steps * strength) steps; SD3's (flow matching) starts at
    int(steps - steps * strength)."""
    if flow:
        return int(max(steps - min(steps * strength, steps), 0)) * order
    run = min(int(steps * strength), steps)
    return max(steps - run, 0) * order


# --- where the picture is decided -----------------------------------------------------------

def distance_to_final(trajectory, decode=None) -> dict[str, list[float]]:
    """For every step, the mean absolute pixel difference (in [0, 1]) of its decoded x0 and of its
    x_t (after the step) to the run's last x_t frame: the final image itself with the full preview,
    its preview otherwise. Frames not kept are decoded again by `decode` (see Trajectory.step_frames);
    the result is kept on the trajectory and saved with it."""
    if not trajectory.steps:
        raise ValueError("the trajectory has no steps")
    last = len(trajectory.steps) - 1
    final = trajectory.step_frames(last, decode)[0].astype(np.float32) / 255.0
    distances: dict[str, list[float]] = {"x0": [], "x_t": []}
    for index in range(len(trajectory.steps)):
        x_t, x0 = trajectory.step_frames(index, decode)
        distances["x_t"].append(float(np.abs(x_t.astype(np.float32) / 255.0 - final).mean()))
        distances["x0"].append(float(np.abs(x0.astype(np.float32) / 255.0 - final).mean()))
    trajectory.distance_to_final = distances
    return distances


def settled_step(distances: list[float], threshold: float = SETTLED_DISTANCE) -> int | None:
    """The first step index from which every distance stays at or below `threshold` (None if never)."""
    settled = None
    for index, distance in enumerate(distances):
        if distance > threshold:
            settled = None
        elif settled is None:
            settled = index
    return settled


# --- latent space ----------------------------------------------------------------------------

@dataclass
class LatentSpace:
    """An image through the VAE and back (the post's "departure to latent space")."""

    image: np.ndarray  # uint8 (H, W, 3) as encoded
    latents: np.ndarray  # (C, h, w) at UNet scale
    reconstruction: np.ndarray  # uint8 (H, W, 3): the latents decoded
    psnr: float  # dB, reconstruction against the image

    @property
    def pixel_values(self) -> int:
        return int(self.image.size)

    @property
    def latent_values(self) -> int:
        return int(self.latents.size)

    @property
    def compression(self) -> float:
        return self.pixel_values / self.latent_values


def latent_space(model, image, width: int | None = None, height: int | None = None) -> LatentSpace:
    """`image` at width x height (default the model's native size) encoded, and decoded back."""
    from sdviz.previews import decode_full

    picture, latents = encode_image(model, image, width, height)
    reconstruction = decode_full(model, latents)[0]
    error = np.mean((picture.astype(np.float64) / 255.0 - reconstruction.astype(np.float64) / 255.0) ** 2)
    psnr = float(10 * np.log10(1.0 / error)) if error > 0 else float("inf")
    return LatentSpace(image=picture, latents=latents[0].float().cpu().numpy(), reconstruction=reconstruction,
                       psnr=psnr)
