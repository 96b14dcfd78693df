"""A bounded cache of a trajectory's decoded frames: the latents are the record, frames a picture of them.

A run decodes x_t and x0 as it goes (every N steps) for whoever watches it live.
Kept, those frames would dwarf the latents (two 512 x 512 frames are 1.5 MB, a
step's latents 0.3 MB), so a long-lived holder of a trajectory (the app keeps one
per browser session) moves them here: the most recently used stay, up to
`max_bytes`, and any other step is decoded again from its latents when it is
shown (`Trajectory.step_frames`), bit for bit what the run decoded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

DEFAULT_MAX_BYTES = 4 * 2**20  # two steps' frames at 512 x 512; every step of a 64 x 64 run


class FrameCache:
    """Step index -> (x_t frame, x0 frame), least recently used dropped past max_bytes."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._frames: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()  # a session's explorer events may run at once

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            frames = self._frames.get(index)
            if frames is not None:
                self._frames.move_to_end(index)
            return frames

    def put(self, index: int, frames: tuple[np.ndarray, np.ndarray]) -> None:
        with self._lock:
            self._frames[index] = frames
            self._frames.move_to_end(index)
            while len(self._frames) > 1 and self._bytes() > self.max_bytes:  # the newest always stays
                self._frames.popitem(last=False)

    def take(self, record) -> None:
        """Moves a step record's frames into the cache; the record keeps its latents only."""
        if record.x_t_image is not None:
            self.put(record.index, (record.x_t_image, record.x0_image))
            record.x_t_image = record.x0_image = None

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes()

    def _bytes(self) -> int:
        return sum(x_t.nbytes + x0.nbytes for x_t, x0 in self._frames.values())

    def __len__(self) -> int:
        return len(self._frames)

    def __getstate__(self):  # picklable (ZeroGPU hands state to its GPU process): the lock is not
        return {"max_bytes": self.max_bytes, "_frames": self._frames}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
