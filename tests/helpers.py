"""Helpers shared by test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sdviz_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m sdviz ARGS` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "sdviz", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def sdviz_main(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m sdviz ARGS` run in this process (its `main`, stdout and stderr captured): the same
    command without a new interpreter's imports. `sdviz_cli` keeps the real subprocess where that matters."""
    import contextlib
    import io

    from sdviz.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["python", "-m", "sdviz", *args], code, out.getvalue(), err.getvalue())
