"""The model work that runs on the GPU on Hugging Face's ZeroGPU Spaces, and unchanged elsewhere.

On ZeroGPU (the `spaces` package importable) a function wrapped by `gpu` runs in a GPU process that
is lent for the call: its arguments and result are pickled across. Each function here is one such
call: a run's steps, a step's frames decoded again, the guidance halves, the forward process and the
latent space. Nothing here imports gradio.
"""

from __future__ import annotations

from sdviz.analysis import forward
from sdviz.sampling.previews import Previewer


def on_spaces() -> bool:
    """Whether Hugging Face's `spaces` package (ZeroGPU) is importable."""
    try:
        import spaces  # noqa: F401
    except ImportError:
        return False
    return True


def gpu(fn):
    """@spaces.GPU on Hugging Face Spaces (ZeroGPU); unchanged elsewhere."""
    if not on_spaces():
        return fn
    import spaces

    return spaces.GPU(fn)


@gpu
def iterate(run, emit) -> None:
    """The run's steps, on the worker thread (on ZeroGPU, in the GPU process)."""
    for record in run:
        emit(record)


iterate.in_process = not on_spaces()  # here, the run steps in this process and can take turns (ui.streaming)


@gpu
def decode_record(previewer, record, alone: bool):
    """A step's frames decoded again from its latents (on ZeroGPU, in the GPU process)."""
    return previewer.record_frames(record, alone)


decode_latents = gpu(Previewer.decode)  # latents to frames
guidance_frames = gpu(Previewer.guidance_frames)  # the x0 of each half of the guidance batch
denoised_frame = gpu(Previewer.denoised_frame)  # LCM's boundary-conditioned estimate
forward_process = gpu(forward.forward_process)  # an image noised to the run's levels
latent_space = gpu(forward.latent_space)  # an image through the VAE and back
