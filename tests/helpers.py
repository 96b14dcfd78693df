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
