"""The Downloads tab: the session's run as files, written the first time the tab is opened: the
filmstrip, GIF and MP4, the trajectory (JSON + latents + frames, one zip) and run.html, the page
that replays the run with no server. /generate returns the same files.
(The app's own writers, beside sdviz.workflows.render.write_run.)
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import gradio as gr

from sdviz.drawing.sheets import filmstrip, save_gif, save_mp4
from ui.errors import user_errors
from ui.tabs.shared import PRIVATE, Shared


def write_downloads(traj, folder: Path) -> list[str]:
    """filmstrip.png, trajectory.gif, trajectory.mp4 and trajectory.zip (JSON + latents + frames);
    `traj` holds its frames (see Trajectory.with_frames)."""
    files = []
    if traj.decoded_steps():
        filmstrip(traj).save(folder / "filmstrip.png")
        files += [str(folder / "filmstrip.png"), str(save_gif(traj, folder / "trajectory.gif")),
                  str(save_mp4(traj, folder / "trajectory.mp4"))]
    files.append(str(write_trajectory_zip(traj, folder / "trajectory.zip")))
    return files


def write_trajectory_zip(traj, path: Path) -> Path:
    """The trajectory (JSON + latents + frames) as one zip; no unzipped copy stays on disk."""
    saved = traj.save(path.with_suffix(""))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(saved.iterdir()):
            archive.write(item, item.name)
    shutil.rmtree(saved)
    return path


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
        """write_downloads, and run.html: the page that replays the run with no server."""
        folder = self.files.new_folder()
        complete = traj.with_frames(self.session.decoder(traj))
        files = write_downloads(complete, folder)
        return [*files, str(self.threads.call(self._write_page, complete, folder / "run.html"))]

    def _write_page(self, traj, path: Path) -> Path:
        """On the model thread: the guidance halves are decoded with the run's own preview decoder."""
        from sdviz.drawing.page import write_page

        previewer = self.session.decoder(traj).previewer
        model = previewer.model
        return write_page(traj, path, previewer.record_frames, previewer, model.latent_rgb)
