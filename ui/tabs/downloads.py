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


def build(handlers: DownloadHandlers, shared: Shared) -> gr.File:
    """The Downloads tab, its files written when it is opened; returns their list (emptied after each run)."""
    with gr.Tab("Downloads", elem_id="downloads-tab") as tab:
        downloads = gr.File(label="GIF, MP4, filmstrip, trajectory, and run.html (the run as one page that "
                            "replays it offline)", file_count="multiple", elem_id="downloads")
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
        files = self.write(traj)
        return files, files

    def write(self, traj) -> list[str]:
        """The run's DOWNLOADS, decoded again where needed by the run's own decoder (on the model threads)."""
        folder = self.files.new_folder()
        return [str(path) for _, path in run_files(traj, folder, self.session.decoder(traj), DOWNLOADS)]
