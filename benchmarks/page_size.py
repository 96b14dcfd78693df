"""The size of run.html, the page that replays a run, for the runs people share.

    python benchmarks/page_size.py            # the sizes
    python benchmarks/page_size.py --write    # also record them in docs/BENCHMARKS.md

Pages written as `render --html` writes them (every step, attention captured, guidance halves) for a
20-step run of the embedded model, 50-step runs at 512 x 512 (frames scaled down to PAGE_SIDE in the
page): the embedded model (real pictures) and SD 1.5's geometry with random weights (every frame noise,
which compresses worst), and a comparison of four 20-step variants of the embedded model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sdviz  # noqa: E402
from sdviz.drawing.page import HEAT_SIDE, LOSSLESS_SIDE, PAGE_SIDE, comparison_page, run_page  # noqa: E402
from sdviz.sampling.attention import AttentionCapture  # noqa: E402

PROMPT = "a fish on the left and a rocket on the right on a blue background"  # the page's first example
MB = 2**20


def page_bytes(model, settings: sdviz.Settings) -> tuple[int, int]:
    run = sdviz.Run(model, settings, capture=AttentionCapture(model))
    for _ in run:
        pass
    run.trajectory.distance_to_final = sdviz.analysis.distance.distance_to_final(run.trajectory, run.previewer)
    page = run_page(run.trajectory, run.previewer)
    return len(page.encode()), len(run.trajectory.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    from benchmarks.benchmark import write_section
    from benchmarks.benchmark_app import frame_size_model

    embedded = sdviz.load_model()
    big = sdviz.load_model(str(frame_size_model(Path(tempfile.mkdtemp(prefix="sdviz-page-")) / "sd15-frames")))
    rows = [("embedded model, 64 x 64", *page_bytes(embedded, sdviz.Settings(prompt=PROMPT, steps=20))),
            ("embedded model at 512 x 512 (real pictures at SD 1.5's frame size)",
             *page_bytes(embedded, sdviz.Settings(prompt=PROMPT, steps=50, width=512, height=512))),
            ("SD 1.5's geometry, random weights, 512 x 512, approx preview (every frame noise: the worst case)",
             *page_bytes(big, sdviz.Settings(prompt=PROMPT, steps=50, width=512, height=512, preview="approx")))]
    comparison = sdviz.compare(embedded, sdviz.Settings(prompt=PROMPT, steps=20),
                               {"scheduler": ["ddim", "euler", "dpmpp_2m_karras", "unipc"]})
    rows.append(("comparison: 4 variants of the embedded model", len(comparison_page(comparison).encode()),
                 sum(len(t.steps) for t in comparison.trajectories)))
    lines = ["<!-- bench:page -->", "### run.html, the page that replays a run", "",
             f"`python benchmarks/page_size.py`: every step's x_t, predicted x0, predicted noise and the guidance "
             f"halves' x0 as WebP (lossless up to {LOSSLESS_SIDE} pixels high, lossy above, scaled down to "
             f"{PAGE_SIDE}), the prompt's words' attention per step ({HEAT_SIDE} x {HEAT_SIDE} bytes at most), "
             "the distances, and the page's own script.", "", "| run | steps | run.html |", "|---|---|---|"]
    lines += [f"| {name} | {steps} | {size / MB:.2f} MB |" for name, size, steps in rows]
    lines.append("<!-- /bench:page -->")
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section("page", section)


if __name__ == "__main__":
    main()
