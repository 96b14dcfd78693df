"""How a finished run and a comparison show themselves in a notebook: their page, inline, in a sandboxed frame."""

from __future__ import annotations

import contextlib
import sys

from sdviz.messages import text


def trajectory_html(traj, previewer=None) -> str:
    """A run's page (`trajectory_page`) in a sandboxed frame, to show inline."""
    from sdviz.drawing.page import framed

    return framed(trajectory_page(traj, previewer), text("notebook.run_title"))


def trajectory_page(traj, previewer=None) -> str:
    """A run's page (`sdviz.drawing.page.run_page`) of bounded size. The run's decoder (`previewer`, else the
    trajectory's own while its model is loaded) decodes again what is not kept: the steps decoded every N,
    the guidance halves, the distances to the final image."""
    from sdviz.analysis.distance import distance_to_final
    from sdviz.drawing.page import bounded, run_page
    from sdviz.sampling.errors import InputError

    previewer = previewer if previewer is not None else traj.decoder()
    if traj.steps and traj.distance_to_final is None:
        with contextlib.suppress(InputError):  # frames not kept and no decoder for them: no curve on the page
            traj.distance_to_final = distance_to_final(traj, previewer)
    return bounded(lambda side: run_page(traj, previewer, side=side))


def comparison_html(comparison) -> str:
    """A comparison's side-by-side page (`comparison_page`) in a sandboxed frame, to show inline."""
    from sdviz.drawing.page import bounded, comparison_page, framed

    return framed(bounded(lambda side: comparison_page(comparison, side=side)), text("notebook.comparison_title"))


def html_of(value) -> str | None:
    """What the notebook shows for a Trajectory or Comparison: its page; None (the one-line repr instead)
    for a run with nothing to show."""
    from sdviz.sampling.errors import InputError

    try:
        if hasattr(value, "trajectories"):
            return comparison_html(value)
        return trajectory_html(value)
    except InputError:  # nothing decoded and no model to decode it: the plain repr says what the run is
        return None


def register(shell=None) -> bool:
    """Registers the HTML formatter for Trajectory and Comparison with the running IPython kernel (or `shell`),
    by name, so neither module is imported for it; False where there is none."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type_by_name("sdviz.sampling.trajectory", "Trajectory", html_of)
    formatter.for_type_by_name("sdviz.workflows.compare", "Comparison", html_of)
    return True
