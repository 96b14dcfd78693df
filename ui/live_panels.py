"""What a streamed run's live panels show, update by update: the diagram with its active part lit, the
status, the newest x_t and x0, and the filmstrip (whole when it must be drawn again, else its new figures).

Plain HTML strings by panel name (`ui.html`), for the run's event and for the session's live feed alike
(`ui.live_feed`); a panel left None is unchanged (no new figures: None). The frames each step brings
are shown (the newest), thumbnailed (those on the filmstrip's stride) and moved into the run's bounded frame cache: the
trajectory the session keeps holds latents, not frames.
"""

from __future__ import annotations

from sdviz.messages import text
from sdviz.sampling.frames import FrameCache
from ui import html

PANELS = ("diagram", "status", "live", "strip", "figures")  # in the order of the run event's first outputs


class LivePanels:
    def __init__(self, traj):
        self.traj = traj
        traj.frame_cache = FrameCache()
        self.strip = html.Filmstrip()
        self.newest = None  # (steps done, x_t, x0) of the newest decoded step

    def _diagram(self, active: str, step: str = "") -> str:
        traj = self.traj
        return html.diagram(traj.shapes, traj.facts, active, traj.settings.scheduler, step, traj.settings.img2img)

    def _live(self) -> str | None:
        return html.live(*self.newest[1:], self.newest[0]) if self.newest else None

    def start(self) -> dict:
        """Before the first step: the prompt (or the image) being encoded, nothing of an earlier run."""
        return {"diagram": self._diagram("encode" if self.traj.settings.img2img else "text"),
                "status": html.status(note=text("status.encoding")), "live": html.live(), "strip": "",
                "figures": None}

    def step(self, records: list, total: int) -> dict:
        """After `records`, the steps that arrived since the last update."""
        traj, strip = self.traj, self.strip
        if not strip.figures and traj.noise_image is not None:
            strip.add(0, traj.noise_image)
        decoded = [r for r in records if r.decoded]
        for record in decoded:
            strip.add(record.index + 1, record.x_t_image)
        whole, new = strip.news()
        if decoded:
            self.newest = decoded[-1].index + 1, decoded[-1].x_t_image, decoded[-1].x0_image
        for record in decoded:  # the record keeps its latents; the cache the frames (the newest is held above)
            traj.frame_cache.take(record)
        return {"diagram": self._diagram("unet") if records[0].index == 0 else None,
                "status": html.status(records[-1], total), "live": self._live() if decoded else None,
                "strip": whole, "figures": new or None}

    def end(self, total: int, ended: str) -> dict:
        """The run's last panels: `ended` says how it ended (finished, stopped, cut short)."""
        traj = self.traj
        if self.newest is not None:
            self.strip.close(*self.newest[:2])
        for record in traj.steps:  # a fork's kept steps came with frames, not through the stream
            traj.frame_cache.take(record)
        return {"diagram": self._diagram("vae", "· " + text("diagram.done")),
                "status": html.status(traj.steps[-1] if traj.steps else None, total, "· " + ended),
                "live": self._live(), "strip": self.strip.html(), "figures": None}
