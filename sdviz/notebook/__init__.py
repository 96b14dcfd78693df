"""sdviz in a notebook: a finished run shows itself, and `live` follows a run as it goes.

    import sdviz
    model = sdviz.load_model()
    traj = sdviz.generate(model, sdviz.Settings(prompt="a fish on the left"), attention=True)
    traj                                        # the run's page, inline: slider, tokens, attention, guidance
    live = sdviz.live(model, sdviz.Settings(prompt="a rocket"))   # a widget: x_t and x0 as they come, Stop
    live.wait().final_image                     # the trajectory, once it has ended

In a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab), `import sdviz` registers an HTML formatter for
`Trajectory` and `Comparison` (`register`): a cell that ends in one shows the page `sdviz html` writes, in a
sandboxed frame of its own (its script cannot reach the notebook), with no network and of bounded size;
their plain repr stays one line. `live` is an anywidget (`pip install "sdviz[notebook]"`): importing sdviz
does not need it.
"""

from __future__ import annotations

from sdviz.messages import text
from sdviz.notebook.show import comparison_html, html_of, register, trajectory_html, trajectory_page

__all__ = ["comparison_html", "html_of", "live", "register", "trajectory_html", "trajectory_page"]


def live(model, settings, init_image=None, *, attention: bool = True, lang: str | None = None, fork=None):
    """A widget that runs `settings` on `model` and follows it: each step's x_t and x0 as they come, the step,
    timestep and σ, a progress bar and a Stop button; when the run ends, the explorer of the run (its page).
    The run goes on in a thread of its own, so the kernel stays free (Stop works, other cells run); the
    trajectory is `widget.trajectory` once it has ended (`widget.wait()` blocks until then). Bad settings are
    refused here, before the widget is made (`sdviz.InputError`). `lang`: the widget's language (en, zh, ja)."""
    try:
        from sdviz.notebook.widget import Live
    except ImportError as error:
        if "anywidget" not in str(error) and "ipywidgets" not in str(error):
            raise
        raise ImportError(text("notebook.needs_anywidget")) from None
    return Live(model, settings, init_image=init_image, attention=attention, lang=lang, fork=fork)
