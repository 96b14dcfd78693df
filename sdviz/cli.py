"""The command line: `sdviz render|compare|invert|html|map|words|forward|schedule|schedulers|layers` (or
`python -m sdviz`).

Bad input is refused before any model work with one line on stderr naming the
value and what is allowed, and exit status 2; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from sdviz.analysis.align import ALIGNMENTS
from sdviz.analysis.path import METHODS, SPANS
from sdviz.analysis.schedule import COMPARED
from sdviz.messages import LANGUAGES, speaking, text
from sdviz.sampling import schedulers
from sdviz.sampling.checks import PREVIEW_MODES
from sdviz.sampling.errors import InputError
from sdviz.sampling.settings import Settings
from sdviz.workflows.compare import MAX_VARIANTS, TEXT_SEPARATOR, VARIED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdviz", description="See Stable Diffusion denoise, step by step.")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="run one prompt (or fork a run) and write every step")
    _run_options(render)
    render.add_argument("--fork", default=None, type=Path, metavar="RUN_DIR",
                        help="continue the run saved in RUN_DIR from after step --at; options not given "
                             "are the parent's")
    render.add_argument("--at", type=int, default=None,
                        help="with --fork: the steps of the parent kept (0 to its steps)")

    compare = commands.add_parser("compare", help="one seed through several settings, side by side")
    _run_options(compare)
    compare.add_argument("--vary", action="append", required=True, metavar="NAME=V1,V2",
                         help=f"a setting and its values ({', '.join(VARIED)}; prompts separated by "
                              f"'{TEXT_SEPARATOR}'); several --vary give their product, "
                              f"{MAX_VARIANTS} variants at most")
    compare.add_argument("--align", default="progress", help=f"line the runs up by {' or '.join(ALIGNMENTS)}")
    defaults = Settings()

    invert = commands.add_parser("invert", help="an image run backwards to noise (DDIM inversion; flow models: "
                                                "Euler), then forward again")
    invert.add_argument("--image", required=True, help="the image to invert")
    invert.add_argument("--prompt", required=True, help="what the image shows")
    invert.add_argument("--negative-prompt", default="")
    invert.add_argument("--steps", type=int, default=50)
    invert.add_argument("--guidance", type=float, default=1.0,
                        help="guidance of both directions (default 1: none; the error grows with it)")
    invert.add_argument("--sweep", default=None, metavar="G1,G2",
                        help="also the reconstruction error at these guidance values (error.json, stderr)")
    invert.add_argument("--seed", type=int, default=defaults.seed, help="the VAE's posterior sample")
    invert.add_argument("--width", type=int, default=None)
    invert.add_argument("--height", type=int, default=None)
    invert.add_argument("--model", default=None)
    invert.add_argument("--lang", default=None, choices=tuple(LANGUAGES),
                     help="the language of the files' words: en, zh (简体中文) or ja (日本語); default en")
    invert.add_argument("--lora", action="append", default=None, metavar="PATH_OR_ID[:SCALE]",
                         help="a LoRA (safetensors file, folder or hub id) fused into the model at SCALE "
                              "(default 1): LCM-LoRA, TCD-LoRA, Hyper-SD; repeat for several")
    invert.add_argument("--preview", default=defaults.preview, help=f"per-step decoder: {', '.join(PREVIEW_MODES)}")
    invert.add_argument("--every", type=int, default=defaults.every)
    invert.add_argument("--attention", action="store_true", help="capture cross-attention in both runs")
    invert.add_argument("--device", default=None)
    invert.add_argument("--html", action="store_true", help="also write run.html in each run folder")
    invert.add_argument("--out", required=True, type=Path)

    forward = commands.add_parser("forward", help="an image noised to a schedule's levels: the forward process")
    forward.add_argument("--image", required=True, help="the image (or a run's final.png)")
    forward.add_argument("--steps", type=int, default=defaults.steps)
    forward.add_argument("--scheduler", default=None, help="whose noise levels (default: the model's own)")
    forward.add_argument("--seed", type=int, default=defaults.seed, help="the noise eps")
    forward.add_argument("--model", default=None)
    forward.add_argument("--preview", default="full", help=f"decoder for the frames: {', '.join(PREVIEW_MODES)}")
    forward.add_argument("--device", default=None)
    forward.add_argument("--out", required=True, type=Path)

    schedule = commands.add_parser("schedule", help="a scheduler's noise levels: timestep, sigma, alpha_bar, snr")
    schedule.add_argument("--scheduler", default=None, help="default: the model's own")
    schedule.add_argument("--steps", type=int, default=defaults.steps)
    schedule.add_argument("--model", default=None, help="whose scheduler config (default: the embedded model's)")
    schedule.add_argument("--json", action="store_true", help="print the rows as JSON")
    schedule.add_argument("--compare", default=None,
                          help="schedulers drawn beside it in the PNG (comma-separated; '' for none; default "
                               f"{','.join(COMPARED)}, or those that fit the model)")
    schedule.add_argument("--out", type=Path, default=None, help="write the plot here as PNG")

    page = commands.add_parser("html", help="a saved run (or comparison) as one self-contained page that replays it")
    page.add_argument("run", type=Path, metavar="RUN_DIR", help="a folder `render` or `compare` wrote")
    page.add_argument("--model", default=None,
                      help="the run's model, to decode steps whose frames were not saved (--every N)")
    page.add_argument("--out", default=None, type=Path, help="the page (default RUN_DIR/run.html or compare.html)")
    page.add_argument("--lang", default=None, choices=tuple(LANGUAGES),
                     help="the language of the files' words: en, zh (简体中文) or ja (日本語); default en")

    path_map = commands.add_parser("map", help="the path: every step's x_t and x0 of saved runs in one 2-D plane")
    path_map.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR",
                          help="folders `render` wrote, or `compare` wrote (its variants are the runs)")
    path_map.add_argument("--method", default="pca", help=f"the projection: {', '.join(METHODS)} (umap needs "
                                                          "umap-learn)")
    path_map.add_argument("--json", action="store_true", help="print the points as JSON")
    path_map.add_argument("--out", type=Path, default=None, help="draw the map here as PNG")
    path_map.add_argument("--lang", default=None, choices=tuple(LANGUAGES),
                          help="the language of the words: en, zh (简体中文) or ja (日本語); default en")

    words = commands.add_parser("words", help="the prompt's words ranked by their attention inside a box")
    words.add_argument("run", type=Path, metavar="RUN_DIR", help="a folder `render --attention` wrote")
    words.add_argument("--step", type=int, required=True, help="the step, counted from 1 as the page's slider counts")
    words.add_argument("--box", required=True, metavar="X0,Y0,X1,Y1", help="the region, in image pixels")
    words.add_argument("--span", default="step", help=f"{', '.join(SPANS)}: at the step, over the steps up to it, "
                                                      "or over the whole run")
    words.add_argument("--json", action="store_true", help="print the ranked words as JSON")
    words.add_argument("--lang", default=None, choices=tuple(LANGUAGES),
                       help="the language of the words: en, zh (简体中文) or ja (日本語); default en")

    commands.add_parser("schedulers", help="list the scheduler names")

    layers = commands.add_parser("layers", help="the UNet's attention layers with their tensor shapes")
    layers.add_argument("--model", default=None)
    layers.add_argument("--height", type=int, default=None)
    layers.add_argument("--width", type=int, default=None)
    layers.add_argument("--guidance", type=float, default=defaults.guidance,
                        help="> 1 doubles the batch, as in a guided run")
    layers.add_argument("--json", action="store_true")
    return parser


def _run_options(command) -> None:
    """The options of a run: its settings (None: the default, or a fork's parent's), model, image, output."""
    defaults = Settings()
    command.add_argument("--prompt", default=None, help="required, unless forking (then: the parent's)")
    command.add_argument("--negative-prompt", default=None)
    command.add_argument("--model", default=None, help="diffusers folder or hub id (default: the embedded model)")
    command.add_argument("--lang", default=None, choices=tuple(LANGUAGES),
                     help="the language of the files' words: en, zh (简体中文) or ja (日本語); default en")
    command.add_argument("--lora", action="append", default=None, metavar="PATH_OR_ID[:SCALE]",
                         help="a LoRA (safetensors file, folder or hub id) fused into the model at SCALE "
                              "(default 1): LCM-LoRA, TCD-LoRA, Hyper-SD; repeat for several")
    command.add_argument("--scheduler", default=None,
                         help="short or diffusers class name; see `schedulers` (default: the model's own)")
    command.add_argument("--steps", type=int, default=None, help=f"default {defaults.steps}")
    command.add_argument("--guidance", type=float, default=None,
                         help=f"default {defaults.guidance} (Flux: the guidance its transformer takes as an input)")
    command.add_argument("--true-cfg", type=float, default=None,
                         help="Flux only: real classifier-free guidance with --negative-prompt when above 1 "
                              "(default 1)")
    command.add_argument("--eta", type=float, default=None, help=f"default {defaults.eta}")
    command.add_argument("--seed", type=int, default=None, help=f"default {defaults.seed}")
    command.add_argument("--width", type=int, default=None, help="pixels (default: the model's native size)")
    command.add_argument("--height", type=int, default=None)
    command.add_argument("--init-image", default=None, help="img2img: the starting image")
    command.add_argument("--strength", type=float, default=None,
                         help=f"img2img: share of the schedule run, (0, 1] (default {defaults.strength})")
    command.add_argument("--source-prompt", default=None,
                         help="edit the init image (CycleDiffusion, ddim): what the image shows; --prompt is the edit")
    command.add_argument("--source-guidance", type=float, default=None,
                         help="an edit: guidance of the source prompt (default 1)")
    command.add_argument("--preview", default=None,
                         help=f"per-step decoder: {', '.join(PREVIEW_MODES)} (default {defaults.preview})")
    command.add_argument("--every", type=int, default=None, help="decode every N steps (the last always; default 1)")
    command.add_argument("--attention", action="store_true",
                         help="capture cross-attention; write attention.npz and overlays")
    command.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    command.add_argument("--html", action="store_true",
                         help="also write a self-contained page that replays the run (OUT/run.html; compare: "
                              "OUT/compare.html)")
    command.add_argument("--out", required=True, type=Path)


def _report(record, total: int) -> None:
    """One progress line; total is the run's own count of scheduler entries (Heun's doubled
    ones, img2img's share of the schedule), not the steps asked for."""
    print(f"step {record.index + 1}/{total} timestep {record.timestep:g} sigma {record.sigma:.4f} "
          f"({record.seconds * 1000:.0f} ms)", file=sys.stderr, flush=True)


def render(args) -> int:
    from sdviz.sampling.checks import validate
    from sdviz.sampling.images import load_image

    given = {name: getattr(args, name) for name in SETTING_OPTIONS if getattr(args, name) is not None}
    fork, source = None, args.model
    if args.fork is not None:
        fork, settings = _fork(args, given)
        source = _model_named(fork.parent.settings.model, source, f"--fork {args.fork.name!r}")
        init_image = None
    else:
        if args.at is not None:
            raise InputError.said("cli.at_needs_fork", at=args.at)
        if "prompt" not in given:
            raise InputError.said("cli.no_prompt")
        img2img = args.init_image is not None
        settings = validate(Settings(**given), img2img=img2img)
        init_image = load_image(args.init_image) if img2img else None
    model = _load(source, args)
    _run_and_write(model, settings, init_image, args.attention, args.out, fork, args.html)
    print(args.out / "final.png")
    return 0


def _run_and_write(model, settings, init_image, attention: bool, out: Path, fork=None, html: bool = False):
    """One run, reported on stderr, written to `out` as `render` writes it; returns the trajectory."""
    from sdviz.sampling.sampler import Run
    from sdviz.workflows.render import PARTS, run_files

    capture = None
    if attention:
        from sdviz.sampling.attention import AttentionCapture

        capture = AttentionCapture(model)
    run = Run(model, settings, init_image=init_image, capture=capture, fork=fork)
    for record in run:
        _report(record, run.total)
    traj = run.trajectory
    for warning in traj.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    parts = PARTS + (("page",) if html else ())
    written = list(run_files(traj, out, run.previewer, parts))  # decodes again what --every skipped
    print(f"wrote {len(written)} files to {out} ({traj.timings['total']:.2f} s)", file=sys.stderr)
    return traj


def invert(args) -> int:
    from sdviz.sampling.checks import validate
    from sdviz.sampling.images import load_image
    from sdviz.sampling.models import check_source, default_model
    from sdviz.workflows.compare import parse_vary
    from sdviz.workflows.invert import guidance_sweep, invert

    settings = Settings(prompt=args.prompt, negative_prompt=args.negative_prompt, scheduler="ddim", steps=args.steps,
                        guidance=args.guidance, seed=args.seed, width=args.width, height=args.height,
                        preview=args.preview, every=args.every, invert=True)
    validate(settings, img2img=True)
    sweep = parse_vary(f"guidance={args.sweep}")[1] if args.sweep is not None else []  # as --vary reads them
    for guidance in sweep:
        validate(replace(settings, guidance=guidance), img2img=True)
    loras = _loras(args)
    check_source(args.model or default_model())
    image = load_image(args.image)
    model = _load(args.model, args, loras)
    captures = (None, None)
    if args.attention:
        from sdviz.sampling.attention import AttentionCapture

        captures = (AttentionCapture(model), AttentionCapture(model))

    def report(phase: str, record) -> None:
        if record.index == 0:
            print(f"{phase}:", file=sys.stderr)
        _report(record, settings.steps)

    result = invert(model, settings, image, *captures, callback=report)
    others = guidance_sweep(model, settings, image, [g for g in sweep if g != settings.guidance])
    own = [result.summary()] if settings.guidance in sweep else []
    rows = sorted([*own, *others], key=lambda row: row["guidance"]) if sweep else None
    result.save(args.out, page=args.html, sweep=rows)
    for row in [result.summary(), *others]:  # the run's own guidance is not run again
        print(f"guidance {row['guidance']:g}: reconstruction PSNR {row['psnr_db']:.2f} dB, mean |error| "
              f"{row['mean_abs_error']:.2f} / 255 (the VAE alone: {row['vae_psnr_db']:.2f} dB); the inverted noise "
              f"has std {row['noise_std']:.3f}", file=sys.stderr)
    print(args.out / "error.json")
    return 0


def compare(args) -> int:
    from sdviz.analysis.align import check_alignment
    from sdviz.analysis.distance import SETTLED_DISTANCE
    from sdviz.sampling.checks import validate
    from sdviz.sampling.images import load_image
    from sdviz.sampling.models import check_source, default_model
    from sdviz.workflows.compare import compare, read_vary, variants

    given = {name: getattr(args, name) for name in SETTING_OPTIONS if getattr(args, name) is not None}
    img2img = args.init_image is not None
    vary = read_vary(args.vary)
    check_alignment(args.align)
    if "prompt" not in given and "prompt" not in dict(vary):
        raise InputError.said("cli.no_prompt_compare")
    chosen = variants(Settings(**given), vary, args.model)
    for variant in chosen:  # every variant's settings and model, before any model work
        validate(variant["settings"], img2img=img2img)
        check_source(variant["model"] or default_model())
    loras = _loras(args)
    if loras and "model" in dict(vary):
        raise InputError.said("cli.lora_vary_model")
    init_image = load_image(args.init_image) if img2img else None
    model = None if "model" in dict(vary) else _load(args.model, args, loras)

    def report(index: int, record, total: int) -> None:
        if record.index == 0:
            print(f"variant {index + 1}/{len(chosen)}: {chosen[index]['label']}", file=sys.stderr)
        _report(record, total)

    comparison = compare(model, Settings(**given), vary, init_image, by=args.align, attention=args.attention,
                         out=args.out, callback=report, device=args.device, page=args.html)
    for label, traj, settled in zip(comparison.labels, comparison.trajectories, comparison.settled()):
        shown = f"settles at step {settled + 1} of {len(traj.steps)}" if settled is not None else "never settles"
        print(f"{label}: the layout {shown} (x0 within {SETTLED_DISTANCE} of the final image)", file=sys.stderr)
    print(args.out / "compare.png")
    return 0


# render's options that are Settings fields, by the same names
SETTING_OPTIONS = ("prompt", "negative_prompt", "scheduler", "steps", "guidance", "eta", "seed", "width", "height",
                   "strength", "preview", "every", "source_prompt", "source_guidance", "true_cfg")


def _fork(args, given: dict):
    """(Fork, settings) for `render --fork RUN_DIR --at K`: the parent's settings with the options given."""
    from sdviz.sampling.checks import check_int, check_kept
    from sdviz.sampling.fork import Fork, fork_settings
    from sdviz.sampling.trajectory import Trajectory

    if args.at is None:
        raise InputError.said("cli.no_at")
    if args.init_image is not None:
        raise InputError.said("error.fork_init_image", name="--init-image")
    if not (args.fork / "trajectory.json").is_file():
        raise InputError.said("cli.not_run_folder", name=repr(args.fork.name))
    parent = Trajectory.load(args.fork)
    settings = fork_settings(parent, **given)
    check_int("fork step (at)", args.at, 0, len(parent.steps))  # these before any model work
    check_kept(parent, settings)
    return Fork(parent, args.at), settings


def page(args) -> int:
    """`html RUN_DIR`: the page of a saved run, or of a comparison (a folder with compare.json)."""
    from sdviz.drawing.page import comparison_page, run_page

    folder = args.run
    if (folder / "compare.json").is_file():
        from sdviz.workflows.compare import Comparison

        summary = _comparison_summary(folder)
        runs = [_saved_variant(folder, variant["folder"], args.model) for variant in summary["variants"]]
        comparison = Comparison([traj for traj, _, _ in runs], [v["label"] for v in summary["variants"]],
                                summary.get("align", "progress"), previewers=[previewer for _, previewer, _ in runs])
        text, out = comparison_page(comparison), args.out or _page_path(folder, "compare.html")
    else:
        traj, previewer, guidance = _saved_run(folder, args.model)
        text, out = run_page(traj, previewer, guidance=guidance), args.out or _page_path(folder, "run.html")
    out.write_text(text, encoding="utf-8")
    print(f"{out} ({out.stat().st_size / 2**20:.2f} MB)")
    return 0


def _page_path(folder: Path, name: str) -> Path:
    """Where `html` writes its page in the run folder; a link there is refused, not written through."""
    path = folder / name
    if path.is_symlink():
        raise InputError.said("cli.page_link", name=name)
    return path


def _comparison_summary(folder: Path) -> dict:
    """compare.json (`Comparison.summary`), checked: its variants' folders and labels, and the alignment."""
    from sdviz.sampling.checks import MAX_PROMPT_CHARS
    from sdviz.sampling.saved import choice, list_of, read_json, record, text

    variant = record({"folder": text(255), "label": text(4 * MAX_PROMPT_CHARS)})
    schema = record({"align": choice(*ALIGNMENTS), "variants": list_of(variant, 1, MAX_VARIANTS)},
                    required=("variants",))
    return schema("compare.json:", read_json(folder, "compare.json"))


def _saved_variant(folder: Path, name: str, model: str | None):
    """`_saved_run` of a comparison's variant: its folder inside the comparison's; a fault named by its folder."""
    from sdviz.sampling.saved import inside

    variant = inside(folder, name, directory=True)
    try:
        return _saved_run(variant, model)
    except InputError as error:
        raise InputError.said("cli.in_variant", folder=name, message=error) from None


def _saved_run(folder: Path, model: str | None):
    """(trajectory, decoder or None, guidance halves' frames by step) of a folder `render` wrote; the
    decoder (the run's model, loaded) only when some step's frames were not saved. Every file is read
    from inside the folder and checked (`Trajectory.load`, `_saved_frame`)."""
    from sdviz.sampling.saved import inside

    traj = _trajectory(folder)
    previewer = None
    if any(not s.decoded for s in traj.steps):
        from sdviz.sampling.models import load_model
        from sdviz.sampling.previews import Previewer

        settings = traj.settings
        source = _model_named(settings.model, model, f"RUN_DIR {folder.name!r}")
        previewer = Previewer.of(load_model(source), settings)
    from sdviz.drawing.sheets import step_file

    guidance, size = {}, tuple(traj.shapes["image"][1:])
    for step in traj.steps:
        names = [f"{kind}/{step_file(step.index, len(traj.steps))}" for kind in ("x0_uncond", "x0_cond")]
        paths = [inside(folder, name, must_exist=False) for name in names]
        if all(path is not None for path in paths):
            guidance[step.index] = tuple(_saved_frame(path, name, size) for path, name in zip(paths, names))
    return traj, previewer, guidance


def _trajectory(folder: Path):
    """The trajectory saved in a folder `render` wrote (`Trajectory.load`, every file checked)."""
    from sdviz.sampling.trajectory import Trajectory

    if not (folder / "trajectory.json").is_file():
        raise InputError.said("cli.not_run_dir", name=f"{str(folder)!r:.80}")
    return Trajectory.load(folder)


def _saved_frame(path: Path, name: str, size: tuple[int, int]) -> np.ndarray:
    """A frame `render` wrote (x0_cond/NNN.png) as uint8 (H, W, 3); refused unless an image of the run's size."""
    from sdviz.sampling.images import load_image

    def fits(width: int, height: int) -> None:
        if (height, width) != size:
            raise InputError.said("cli.frame_size", name=name, width=width, height=height, run_width=size[1],
                                  run_height=size[0])

    try:
        return np.asarray(load_image(path, check_size=fits, name=name))
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as error:  # what else a crafted PNG makes PIL raise
        reason = (str(error).splitlines() or [type(error).__name__])[0][:100]
        raise InputError.said("error.unreadable_image", name=name, reason=reason) from None


def _loras(args) -> tuple:
    """The --lora options, each checked (safetensors only, its scale in range) before any model work."""
    from sdviz.sampling.loras import Lora

    return tuple(Lora.parse(text) for text in (args.lora or ()))


def _load(source: str | None, args, loras: tuple | None = None):
    """The command's model: `source` (default: the default model) loaded, with its --lora fused in."""
    from sdviz.sampling.loras import adapted
    from sdviz.sampling.models import check_source, default_model, load_model

    loras = _loras(args) if loras is None else loras
    check_source(source or default_model())
    return adapted(load_model(source, device=args.device), loras, in_place=True)


def _model_named(saved: str, given: str | None, what: str) -> str | None:
    """The model to load for a saved run made with the model called `saved`: the one named on the command
    line (`given`), else the default when it is that model. A model a file names is never loaded: a saved
    run is someone's file, and its model name could be any hub id or path."""
    from sdviz.sampling.models import default_model, display_name

    if given is not None or saved == display_name(default_model()):
        return given
    raise InputError.said("cli.model_only", what=what, model=f"{saved!r:.80}")


def path_map(args) -> int:
    """`map RUN_DIR ...`: every step's x_t and x0 of the runs in one plane; a comparison's folder gives its
    variants."""
    from sdviz.analysis.path import trajectory_map

    runs = [run for folder in args.runs for run in _runs_in(folder)]
    mapped = trajectory_map([traj for _, traj in runs], args.method)
    names = [name for name, _ in runs]
    if args.json:
        print(json.dumps(mapped.to_dict(names)))
    else:
        shares = [f"{100 * share:.1f}" for share in mapped.explained]
        print(text("cli.map_pca", runs=len(runs), first=shares[0], second=shares[1]) if shares
              else text("cli.map_umap", runs=len(runs)))
        place = lambda point: f"({point[0]:.2f}, {point[1]:.2f})"  # noqa: E731
        for (name, traj), points, x0 in zip(runs, mapped.points, mapped.x0_points):
            ends = (place(x0[0]), place(x0[-1])) if len(x0) else ("-", "-")
            print(text("cli.map_run", folder=name, steps=len(traj.steps), start=place(points[0]),
                       end=place(points[-1]), first=ends[0], last=ends[1]))
    if args.out is not None:
        from sdviz.drawing.pathmap import map_picture

        map_picture(mapped, [Path(name).name for name in names])[0].save(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _runs_in(folder: Path) -> list[tuple[str, object]]:
    """(name, trajectory) of a run folder, or of each variant of a comparison's folder (compare.json), its name
    the folder as given (a variant's: within it)."""
    if not (folder / "compare.json").is_file():
        return [(str(folder), _trajectory(folder))]
    from sdviz.sampling.saved import inside

    runs = []
    for variant in _comparison_summary(folder)["variants"]:
        try:
            runs.append((str(folder / variant["folder"]),
                         _trajectory(inside(folder, variant["folder"], directory=True))))
        except InputError as error:
            raise InputError.said("cli.in_variant", folder=variant["folder"], message=error) from None
    return runs


def words(args) -> int:
    """`words RUN_DIR --step K --box X0,Y0,X1,Y1`: the prompt's words ranked by the share of their attention
    inside the box."""
    from sdviz.analysis.path import region_words
    from sdviz.sampling.checks import check_int

    try:
        box = [float(value) for value in args.box.split(",")]
    except ValueError:
        box = None
    if box is None or len(box) != 4 or not all(np.isfinite(box)):
        raise InputError.said("error.box_form", value=f"{args.box!r:.60}")
    traj = _trajectory(args.run)
    step = check_int("--step", args.step, 1, len(traj.steps))
    ranked = region_words(traj, step - 1, box, args.span)
    if args.json:
        print(json.dumps(ranked))
        return 0
    total = len(traj.steps)
    span = text(f"cli.span_{args.span}", step=step, total=total)
    print(text("cli.words_title", box=",".join(f"{v:g}" for v in box), span=span))
    width = max((len(item["word"]) for item in ranked), default=4)
    for rank, item in enumerate(ranked, 1):
        bar = "█" * round(40 * item["share"])
        negative = f" {text('cli.words_negative')}" if item["negative"] else ""
        print(f"{rank:3d}. {item['word']:<{width}} {bar:<40} {100 * item['share']:5.1f} %{negative}")
    return 0


def forward(args) -> int:
    from sdviz.analysis.forward import forward_process
    from sdviz.sampling.checks import MAX_SEED, MAX_STEPS, check_int
    from sdviz.sampling.images import load_image
    from sdviz.sampling.models import check_source, default_model, load_model
    from sdviz.workflows.render import write_forward

    check_int("steps", args.steps, 1, MAX_STEPS)
    check_int("seed", args.seed, 0, MAX_SEED)
    if args.scheduler is not None:
        schedulers.resolve(args.scheduler)
    if args.preview not in PREVIEW_MODES:
        raise InputError.said("cli.preview", preview=repr(args.preview), allowed=", ".join(PREVIEW_MODES))
    image = load_image(args.image, name="image")
    check_source(args.model or default_model())
    model = load_model(args.model, device=args.device)
    process = forward_process(model, image, args.scheduler, args.steps, args.seed, args.preview)
    write_forward(process, args.out)
    for index, timestep, alpha_bar in zip(range(len(process.timesteps)), process.timesteps, process.alpha_bar):
        print(f"{index:3d} timestep {timestep:g} alpha_bar {alpha_bar:.4f}", file=sys.stderr)
    print(args.out / "forward.npz")
    return 0


def schedule(args) -> int:
    from sdviz.analysis.schedule import compared, compared_names, schedule_table
    from sdviz.drawing.plots import schedule_plot
    from sdviz.sampling.checks import MAX_STEPS, check_int
    from sdviz.sampling.models import check_source, default_model

    check_int("steps", args.steps, 1, MAX_STEPS)
    source = args.model or default_model()
    check_source(source)
    config, family = _scheduler_config(source)
    scheduler = schedulers.check_fits(args.scheduler or schedulers.model_default(family, config), family)
    names = compared_names(family) if args.compare is None else args.compare.split(",")
    others = [n.strip() for n in names if n.strip() and n.strip() != scheduler]
    for name in others:
        schedulers.check_fits(name, family)
    table = schedule_table(scheduler, args.steps, config, family)
    if args.json:
        print(json.dumps(table, indent=1).replace("Infinity", "null"))
    else:
        print(f"{'index':>5} {'timestep':>9} {'sigma':>10} {'alpha_bar':>10} {'snr':>12}")
        for r in table:
            print(f"{r['index']:>5} {r['timestep']:>9.3f} {r['sigma']:>10.5f} "
                  f"{r['alpha_bar']:>10.6f} {r['snr']:>12.5g}")
    if args.out is not None:
        tables = {scheduler: table, **compared(args.steps, config, others, family)}
        schedule_plot(tables, args.out, title=f"noise levels of {args.steps} steps")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _scheduler_config(source: str) -> tuple[dict, str]:
    """The model's scheduler config and family, read without loading its weights (a folder, or the hub's files)."""
    from diffusers import DDIMScheduler

    from sdviz.sampling.families import family_of
    from sdviz.sampling.models import check_source, pipeline_class_of

    family = family_of(pipeline_class_of(source, check_source(source))).name
    try:
        return dict(DDIMScheduler.load_config(source, subfolder="scheduler")), family
    except (OSError, ValueError) as error:
        raise InputError.said("cli.scheduler_config", source=repr(source), reason=str(error).splitlines()[0]) from None


def layers(args) -> int:
    from sdviz.sampling.attention import model_layer_table
    from sdviz.sampling.models import check_source, default_model, load_model

    check_source(args.model or default_model())
    model = load_model(args.model)
    height = args.height or model.facts.native_height
    width = args.width or model.facts.native_width
    Settings(width=width, height=height).resolved(model.facts)
    table = model_layer_table(model, height, width, guidance=args.guidance > 1)
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    print(f"{'index':>5} {'kind':5} {'res':>4}  {'query':16} {'key':16} {'value':16} {'probs':18} name")
    for row in table:
        print(f"{row['index']:>5} {row['kind']:5} {row['resolution']:>4}  {str(tuple(row['query_shape'])):16} "
              f"{str(tuple(row['key_shape'])):16} {str(tuple(row['value_shape'])):16} "
              f"{str(tuple(row['probs_shape'])):18} {row['name']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with speaking(getattr(args, "lang", None)):  # the files' words (the page, the labels drawn into images)
            return _command(args)
    except InputError as error:  # anything else is a failure: its traceback is what a report needs
        print(f"sdviz: error: {error}", file=sys.stderr)
        return 2


def _command(args) -> int:
    """The command `args` name, run."""
    if args.command == "schedulers":
        for name, class_name, label in schedulers.describe():
            print(f"{name:16} {class_name:34} {label}")
        return 0
    commands = {"layers": layers, "forward": forward, "schedule": schedule, "html": page, "invert": invert,
                "compare": compare, "map": path_map, "words": words}
    return commands.get(args.command, render)(args)


if __name__ == "__main__":
    sys.exit(main())
