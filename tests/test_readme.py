"""The README's Python examples run as written, on the default model: its placeholders are filled in (an
image file of your own, photo.png: a red square; an existing pipeline, `pipe`: the loaded model's)."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Python API"):text.index("## Models")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_python_examples_run(tmp_path, monkeypatch, default):
    import sdviz

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sdviz, "load_model", lambda *args, **kwargs: default)  # loaded once for the suite
    Image.new("RGB", (64, 64), (200, 40, 40)).save(tmp_path / "photo.png")
    blocks = python_blocks()
    assert len(blocks) == 3
    scope = {"pipe": default.pipe}
    for block in blocks:
        exec(compile(block, str(README), "exec"), scope)  # noqa: S102 - the README's own code
    assert (tmp_path / "filmstrip.png").is_file() and (tmp_path / "compare.png").is_file()
    assert (tmp_path / "out" / "trajectory.json").is_file()
    assert scope["result"].psnr > 10 and len(scope["comparing"].comparison.trajectories) == 2
    assert scope["live"].trajectory.complete and len(scope["live"].trajectory.steps) == 30  # the notebook's
