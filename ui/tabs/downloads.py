"""The Downloads tab: the session's run as files, written the first time the tab is opened by the
library's writer (`sdviz.workflows.render.run_files`): the filmstrip, GIF and MP4, the trajectory
(JSON + latents + frames, one zip) and run.html, the page that replays the run with no server.
/generate returns the same files.
"""

from __future__ import annotations

import gradio as gr

from sdviz.workflows.render import DOWNLOADS, run_files
from ui.errors import user_errors
from ui.tabs.shared import PRIVATE, Shared
from ui.words import say


def build(handlers: DownloadHandlers, shared: Shared) -> gr.File:
    """The Downloads tab, its files written when it is opened; returns their list (emptied after each run)."""
    with gr.Tab(say("tab.downloads"), elem_id="downloads-tab") as tab:
        downloads = gr.File(label=say("downloads.files"), file_count="multiple", elem_id="downloads")
    written = shared.states.written
    tab.select(handlers.downloads, [shared.states.trajectory, written], [downloads, written], **PRIVATE)
    return downloads


class DownloadHandlers:
    def __init__(self, session):
        self.session, self.threads, self.files = session, session.threads, session.files

    @user_errors
    def downloads(self, traj, written):
        """GIF, MP4, filmstrip, trajectory and run.html, written the first time they are asked for."""
        if traj is None or not traj.steps:
            return None, None
        if written is not None:
            return written, written
        files, _ = self.write(traj)
        return files, files

    def write(self, traj, deadline=None) -> tuple[list[str], list[str]]:
        """(the run's DOWNLOADS written, the parts left out): decoded again where needed by the run's own
        decoder (on the model threads); with a request's `deadline` (sdviz.sampling.limits.Deadline), no file
        is begun once it has passed, and the trajectory and its page, what a cut-short run keeps, come first."""
        folder = self.files.new_folder()
        files, parts = [], []
        order = DOWNLOADS if deadline is None else sorted(DOWNLOADS, key=lambda part: part not in ("zip", "page"))
        for part, path in run_files(traj, folder, self.session.decoder(traj), order):
            files.append(str(path))
            parts.append(part)
            if deadline is not None and deadline.passed():
                break
        return files, [part for part in DOWNLOADS if part not in parts]
