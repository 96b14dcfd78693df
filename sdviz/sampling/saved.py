"""Reading a saved run: the folder is someone's file, so all of it is checked before anything is used.

`Trajectory.save` writes trajectory.json, latents.npz, frames.npz (and attention.npz); `Trajectory.load`
reads them back through `read_run`, and `AttentionMaps.load` through `read_attention`. Any fault is an
`InputError` of one line naming the file, the field, the value (shortened) and what is allowed:

    latents.npz: x_t has shape (3, 4, 8, 8); allowed: (steps=6, 4, 8, 8)

What is checked:
    files   each one a regular file whose real path, links resolved, lies inside the run folder: a link
            within the folder is followed, one that leads out of it is refused (`inside`)
    JSON    at most 16 MiB, valid UTF-8 JSON; every field the reader uses typed and bounded (`TRAJECTORY`):
            numbers finite and in range, text of bounded length, lists bounded (the steps by the run's
            settings); a field an older file lacks takes its default where the dataclass has one, and a
            field no longer read (each step's statistics) is ignored. The shapes are those the settings and
            the model's facts give, and each step's index is its position
    npz     a zip archive of .npy members, opened without pickles; each member's dtype and shape are read
            from its header and checked before its data is read (latents float32 (steps, C, h, w), frames
            uint8 (H, W, 3) at the run's size, attention float16 on the run's grids), and its declared size
            must be its header's, so what a file can make the reader allocate is what a genuine run of the
            JSON's (bounded) settings holds; a corrupt or truncated archive is refused, not read in part
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sdviz import messages
from sdviz.sampling import schedulers
from sdviz.sampling.checks import (
    MAX_GUIDANCE,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    PREVIEW_MODES,
    check_choice,
    check_float,
    check_int,
    check_text,
)
from sdviz.sampling.errors import InputError, shortened
from sdviz.sampling.families import FAMILIES

FORMAT = "sdviz-trajectory/1"
MAX_JSON_BYTES = 16 * 2**20
MAX_ENTRIES = 2 * MAX_STEPS  # scheduler entries: a second-order scheduler (Heun, KDPM2) takes two a step
MAX_TOKENS = 4096  # text slots of one encoder (CLIP 77, T5 512)
MAX_WIDTH = 65536  # a text embedding's width
MAX_NAME_CHARS = 300  # a model's display name: a folder's name or a hub id
MAX_TOKEN_CHARS = 200
MAX_WARNING_CHARS = 20000
MAX_FORKS = 64  # forks of forks, nested in settings.forked_from
MAX_MEMBERS = 64  # arrays in latents.npz and frames.npz
MAX_ATTENTION_MEMBERS = 1024  # attention.npz: per grid and per layer
MAX_SELF_POSITIONS = 4096  # self-attention maps are (positions x positions) per step
TOKEN_KINDS = ("start", "word", "end", "padding")
LATENT_NAMES = ("x_t_in", "x_t", "noise_pred", "x0_pred", "noise_uncond", "noise_cond", "source_x_next",
                "denoised", "x0_uncond", "x0_cond")  # as `save` names them, per step; every run has the first four
COMPUTED_LATENTS = ("x0_uncond", "x0_cond")  # saved for other readers; `load` computes them again
FRAME_NAMES = ("frame_steps", "x_t", "x0", "noise_image", "init_image", "final_image")

# -- the schema: each check takes (name, value) and returns the value as read, or raises ------------------

Check = Callable[[str, Any], Any]


def whole(low: int, high: int) -> Check:
    return lambda name, value: check_int(name, value, low, high)


def real(low: float, high: float, low_open: bool = False) -> Check:
    return lambda name, value: check_float(name, value, low, high, low_open)


def text(most: int) -> Check:
    return lambda name, value: check_text(name, value, most)


def choice(*allowed: str) -> Check:
    return lambda name, value: check_choice(name, value, allowed)


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError.said("error.not_bool", name=name, value=shortened(value))
    return value


def scheduler_name(name: str, value: Any) -> str:
    """A registered scheduler's name, or a diffusers scheduler class sdviz traces (a model's own)."""
    check_text(name, value, 100)
    try:
        return schedulers.resolve(value).name
    except InputError:
        raise InputError.said("error.saved_scheduler", name=name, value=shortened(value),
                              allowed=", ".join(schedulers.SCHEDULERS)) from None


def optional(check: Check) -> Check:
    return lambda name, value: None if value is None else check(name, value)


def list_of(check: Check, least: int, most: int) -> Check:
    def read(name: str, value: Any) -> list:
        if not isinstance(value, list):
            raise InputError.said("error.not_list", name=name, value=shortened(value), least=least, most=most)
        if not least <= len(value) <= most:
            raise InputError.said("error.item_count", name=name, count=len(value), least=least, most=most)
        return [check(f"{name}[{index}]", item) for index, item in enumerate(value)]
    return read


def mapping(check: Check, most: int, key_chars: int = 100) -> Check:
    """An object of at most `most` entries, each key text, each value passing `check`."""
    def read(name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise InputError.said("error.not_object_entries", name=name, value=shortened(value), most=most)
        if len(value) > most:
            raise InputError.said("error.entry_count", name=name, count=len(value), most=most)
        return {check_text(f"{name} key", key, key_chars): check(_child(name, key), item)
                for key, item in value.items()}
    return read


def record(fields: dict[str, Check], required: tuple[str, ...] | None = None) -> Check:
    """An object with these fields (all required unless `required` names some); keys not listed are ignored."""
    needed = tuple(fields) if required is None else required

    def read(name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise InputError.said("error.not_object_fields", name=name, value=shortened(value),
                                  fields=", ".join(needed))
        missing = [key for key in needed if key not in value]
        if missing:
            raise InputError.said("error.field_missing", name=_child(name, missing[0]), fields=", ".join(needed))
        return {key: check(_child(name, key), value[key]) for key, check in fields.items() if key in value}
    return read


def _child(name: str, key: str) -> str:
    """A field's name in messages: 'trajectory.json: settings', then 'trajectory.json: settings.steps'."""
    return f"{name} {key}" if name.endswith(":") else f"{name}.{key}"


def _forked_from(name: str, value: Any) -> dict:
    if name.count(".forked_from") > MAX_FORKS:
        raise InputError.said("error.forks_nested", name=name.partition(".forked_from")[0], most=MAX_FORKS)
    return record({"at": whole(0, MAX_ENTRIES), "parent": SETTINGS})(name, value)


SETTINGS = record({  # RunSettings; a field an older file lacks takes its default, unless `required`
    "prompt": text(MAX_PROMPT_CHARS),
    "negative_prompt": text(MAX_PROMPT_CHARS),
    "scheduler": scheduler_name,
    "steps": whole(1, MAX_STEPS),
    "guidance": real(0.0, MAX_GUIDANCE),
    "eta": real(0.0, 1.0),
    "seed": whole(0, MAX_SEED),
    "width": whole(1, MAX_SIDE),
    "height": whole(1, MAX_SIDE),
    "strength": real(0.0, 1.0, low_open=True),
    "preview": choice(*PREVIEW_MODES),
    "every": whole(1, MAX_STEPS),
    "source_prompt": optional(text(MAX_PROMPT_CHARS)),
    "source_guidance": real(0.0, MAX_GUIDANCE),
    "invert": flag,
    "true_cfg": real(0.0, MAX_GUIDANCE),
    "model": text(MAX_NAME_CHARS),
    "img2img": flag,
    "forked_from": optional(_forked_from),
    "start_latents": flag,
}, required=("prompt", "scheduler", "steps", "guidance", "seed", "width", "height", "model"))

FACTS = record({  # ModelFacts
    "name": text(MAX_NAME_CHARS),
    "tokens": whole(1, MAX_TOKENS),
    "text_width": whole(1, MAX_WIDTH),
    "latent_channels": whole(1, 64),
    "vae_factor": whole(1, 64),
    "native_height": whole(1, 4 * MAX_SIDE),
    "native_width": whole(1, 4 * MAX_SIDE),
    "scaling_factor": real(0.0, 1e3, low_open=True),
    "prediction_type": choice("epsilon", "v_prediction", "sample", "flow"),
    "parameters": mapping(whole(0, 10**13), 32),
    "family": choice(*FAMILIES),
    "denoiser": choice("unet", "transformer"),
    "shift_factor": real(-1e3, 1e3),
    "size_multiple": whole(0, 1024),
    "scheduler": text(100),
    "denoiser_class": text(100),
    "encoders": list_of(record({"name": text(100), "class": text(100), "tokens": whole(1, MAX_TOKENS),
                                "width": whole(1, MAX_WIDTH)}), 0, 8),
    "context_tokens": whole(0, 4 * MAX_TOKENS),
    "pooled_width": whole(0, MAX_WIDTH),
    "added": text(1000),
    "guidance_embedded": flag,
}, required=("name", "tokens", "text_width", "latent_channels", "vae_factor", "native_height", "native_width",
             "scaling_factor", "prediction_type", "parameters"))

_VIEW = {  # TokenView.to_dict()
    "slots": list_of(record({"slot": whole(0, MAX_TOKENS), "id": whole(0, 2**31), "token": text(MAX_TOKEN_CHARS),
                             "kind": choice(*TOKEN_KINDS)}), 0, MAX_TOKENS),
    "dropped": text(4 * MAX_PROMPT_CHARS),
}
TOKENS = record({  # the token view, and SDXL's, SD3's and Flux's other encoders' views
    **_VIEW,
    "encoder": text(100),
    "others": list_of(record({"tokenizer": text(100), "encoder": text(100), **_VIEW}), 0, 8),
}, required=("slots", "dropped"))

STEP = record({  # one step's summary; its statistics (x_t, x0_pred, noise_pred) are not read
    "index": whole(0, MAX_ENTRIES - 1),
    "timestep": real(-1e6, 1e6),
    "sigma": real(0.0, 1e9),
    "next_vp_scale": real(0.0, 1e9),
    "x0_slope": optional(real(-1e9, 1e9)),
    "eta": real(0.0, 1.0),
    "seconds": real(0.0, 1e9),
    "decoded": flag,
    "distance_to_final": record({"x0": real(0.0, 1.0), "x_t": real(0.0, 1.0)}),
}, required=("index", "timestep", "sigma", "next_vp_scale", "seconds"))

TRAJECTORY = record({  # trajectory.json
    "format": choice(FORMAT),
    "settings": SETTINGS,
    "facts": FACTS,
    "shapes": record({"token_embeddings": list_of(whole(0, 4 * MAX_TOKENS), 2, 2),
                      "latents": list_of(whole(0, 4 * MAX_SIDE), 3, 3),
                      "image": list_of(whole(0, 4 * MAX_SIDE), 3, 3)}),
    "tokens": TOKENS,
    "timings": mapping(real(0.0, 1e9), 32),
    "warnings": list_of(text(MAX_WARNING_CHARS), 0, 100),
    "complete": flag,
    "steps": list_of(STEP, 0, MAX_ENTRIES),  # at most 2 x settings.steps (`read_meta`)
})

# -- files ---------------------------------------------------------------------------------------------


def inside(folder: str | Path, name: str, must_exist: bool = True, directory: bool = False) -> Path | None:
    """folder/name with its links resolved: refused when that leads out of the folder (a link to a file within
    it is followed), or is not a regular file (a directory, with `directory`); None when it does not exist and
    need not."""
    try:
        root, path = Path(folder).resolve(), (Path(folder) / name).resolve()
    except (RuntimeError, OSError) as error:  # a loop of links
        raise InputError.said("error.unresolvable", name=name, reason=_reason(error)) from None
    if path != root and not path.is_relative_to(root):
        raise InputError.said("error.leads_out", name=name, path=shortened(str(path)))
    if not path.exists():
        if must_exist:
            raise InputError.said("error.run_file_missing", name=name)
        return None
    if not (path.is_dir() if directory else path.is_file()):
        raise InputError.said("error.not_a_folder_entry" if directory else "error.not_regular_file", name=name)
    return path


def read_json(folder: str | Path, name: str, most: int = MAX_JSON_BYTES) -> Any:
    """A JSON file of the run folder, parsed (not yet checked against its schema)."""
    path = inside(folder, name)
    with _reading(name, "error.allowed_readable_file"):
        size = path.stat().st_size
        if size > most:
            raise InputError.said("error.too_many_bytes", name=name, size=size, most=most)
        data = path.read_bytes()
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, too deep or too long
        raise InputError.said("error.not_json", name=name, reason=_reason(error)) from None


def _reason(error: BaseException) -> str:
    lines = str(error).splitlines() or [type(error).__name__]
    return lines[0] if len(lines[0]) <= 100 else lines[0][:97] + "..."


@contextlib.contextmanager
def _reading(name: str, allowed: str):
    """Any failure to read or decode `name` as an InputError naming it and what is `allowed` (a catalogue key)."""
    try:
        yield
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, ValueError, EOFError, OSError, KeyError,
            RuntimeError, NotImplementedError) as error:
        raise InputError.said("error.corrupt", name=name, reason=_reason(error),
                              allowed=messages.text(allowed)) from None


class SavedArrays:
    """One npz, opened without pickles; each member's header is read and checked before its data."""

    def __init__(self, path: Path, name: str, most: int = MAX_MEMBERS):
        self.name = name
        with _reading(name, "error.allowed_saved_npz"):
            with open(path, "rb") as file:
                if file.read(4) != b"PK\x03\x04":
                    raise InputError.said("error.not_npz", name=name)
            self.npz = np.load(path, allow_pickle=False)
        members = self.npz.zip.namelist()
        if len(members) > most or any(not member.endswith(".npy") for member in members):
            odd = next((m for m in members if not m.endswith(".npy")), None)
            self.npz.close()
            if odd is None:
                raise InputError.said("error.npz_member_count", name=name, count=len(members), most=most)
            raise InputError.said("error.npz_odd_member", name=name, member=shortened(odd), most=most)
        self.names = [member[:-4] for member in members]

    def __enter__(self) -> SavedArrays:
        return self

    def __exit__(self, *exc) -> None:
        self.npz.close()

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) from the member's .npy header, its data unread; its declared size must be the header's.
        The dtype is the caller's to check (an object array's data is a pickle, which is never read)."""
        with _reading(self.name, "error.allowed_saved_npz"):
            info = self.npz.zip.getinfo(f"{key}.npy")
            with self.npz.zip.open(info) as file:
                version = np.lib.format.read_magic(file)
                if version not in ((1, 0), (2, 0)):
                    raise InputError.said("error.npy_version", name=self.name, array=key, version=version)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(file)
                start = file.tell()
        if not dtype.hasobject and info.file_size != start + math.prod(shape) * dtype.itemsize:
            raise InputError.said("error.npy_size", name=self.name, array=key, size=info.file_size - start,
                                  declared=math.prod(shape) * dtype.itemsize)
        return tuple(shape), dtype

    def array(self, key: str, dtype, shape: tuple[int, ...], allowed: str | None = None,
              load: bool = True) -> np.ndarray | None:
        """Member `key`, refused unless its header declares this dtype and shape (`allowed` says it in words, in
        the current language); without `load`, only checked."""
        got, kind = self.header(key)
        if kind != np.dtype(dtype):
            raise InputError.said("error.member_dtype", name=self.name, array=key, dtype=str(kind)[:60],
                                  allowed=np.dtype(dtype))
        if got != tuple(shape):
            raise InputError.said("error.member_shape", name=self.name, array=key, shape=got,
                                  allowed=allowed or tuple(shape))
        if not load:
            return None
        with _reading(self.name, "error.allowed_saved_npz"):
            return self.npz[key]

    def whole(self, key: str, most: int, length: int | None = None) -> list[int]:
        """A 1-D integer member of at most `most` entries (exactly `length`, when given), as ints."""
        shape, kind = self.header(key)
        if kind.kind not in "iu" or len(shape) != 1 or shape[0] > most or length not in (None, shape[0]):
            allowed = messages.text("error.allowed_integers", count=_count(most, length))
            raise InputError.said("error.member_dtype_shape", name=self.name, array=key, dtype=str(kind)[:60],
                                  shape=shape, allowed=allowed)
        return [int(value) for value in self.array(key, kind, shape)]

    def texts(self, key: str, most: int, length: int | None = None) -> list[str]:
        """A 1-D text member of at most `most` entries (exactly `length`) of at most MAX_TOKEN_CHARS each."""
        shape, kind = self.header(key)
        fits = len(shape) == 1 and shape[0] <= most and length in (None, shape[0])
        if not fits or kind.hasobject or (shape[0] and (kind.kind != "U" or kind.itemsize > 4 * MAX_TOKEN_CHARS)):
            allowed = messages.text("error.allowed_texts", most=MAX_TOKEN_CHARS, count=_count(most, length))
            raise InputError.said("error.member_dtype_shape", name=self.name, array=key, dtype=str(kind)[:60],
                                  shape=shape, allowed=allowed)
        return [str(value) for value in self.array(key, kind, shape)]


def _count(most: int, length: int | None) -> str:
    """A 1-D member's length as a message states it: exactly `length`, else 'n <= most'."""
    return str(length) if length is not None else f"n <= {most}"


# -- a run ---------------------------------------------------------------------------------------------


class SavedRun(NamedTuple):
    meta: dict[str, Any]  # trajectory.json, checked
    latents: dict[str, np.ndarray]  # latents.npz
    frames: dict[str, np.ndarray]  # frames.npz
    attention: Path | None  # attention.npz (inside the folder), read by AttentionMaps.load


def read_run(folder: str | Path) -> SavedRun:
    """A run folder `Trajectory.save` wrote, checked against the schema; InputError names any fault."""
    meta = read_meta(folder)
    steps, (_, height, width) = len(meta["steps"]), meta["shapes"]["image"]
    latents = read_latents(folder, steps, tuple(meta["shapes"]["latents"]))
    frames = read_frames(folder, steps, (height, width))
    return SavedRun(meta, latents, frames, inside(folder, "attention.npz", must_exist=False))


def read_meta(folder: str | Path) -> dict[str, Any]:
    """trajectory.json against TRAJECTORY, and its parts against each other."""
    meta = TRAJECTORY("trajectory.json:", read_json(folder, "trajectory.json"))
    settings, facts, shapes, steps = meta["settings"], meta["facts"], meta["shapes"], meta["steps"]
    if len(steps) > 2 * settings["steps"]:
        raise InputError.said("error.saved_step_count", count=len(steps), most=2 * settings["steps"])
    for position, step in enumerate(steps):
        if step["index"] != position:
            raise InputError.said("error.step_index", position=position, index=step["index"])
        if ("distance_to_final" in step) != ("distance_to_final" in steps[0]):
            raise InputError.said("error.step_keys", position=position)
    height, width, factor = settings["height"], settings["width"], facts["vae_factor"]
    expected = {"latents": [facts["latent_channels"], height // factor, width // factor], "image": [3, height, width],
                "token_embeddings": [facts.get("context_tokens") or facts["tokens"], facts["text_width"]]}
    for key, shape in expected.items():
        if shapes[key] != shape:
            raise InputError.said("error.saved_shape", field=key, shape=shapes[key], allowed=shape)
    return meta


def _steps_shape(steps: int, shape: tuple[int, ...]) -> str:
    return f"({', '.join([f'steps={steps}', *map(str, shape)])})"


def read_latents(folder: str | Path, steps: int, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """latents.npz: x_start (C, h, w), and per step (steps, C, h, w) float32, the first four always."""
    with SavedArrays(inside(folder, "latents.npz"), "latents.npz") as npz:
        allowed = ("x_start", *LATENT_NAMES) if steps else ("x_start",)
        for key in npz.names:
            if key not in allowed:
                raise InputError.said("error.npz_unknown_member", name="latents.npz", member=shortened(key),
                                      allowed=", ".join(allowed))
        latents = {"x_start": npz.array("x_start", np.float32, shape)}
        for key in LATENT_NAMES[:4] if steps else ():
            if key not in npz.names:
                raise InputError.said("error.latent_missing", array=key, names=", ".join(LATENT_NAMES[:4]))
        for key in npz.names:
            if key != "x_start":
                array = npz.array(key, np.float32, (steps, *shape), _steps_shape(steps, shape),
                                  load=key not in COMPUTED_LATENTS)  # those only checked
                if array is not None:
                    latents[key] = array
        return latents


def read_frames(folder: str | Path, steps: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """frames.npz: the decoded steps' indices, their frames (n, H, W, 3) and the images, uint8 at the run's size."""
    with SavedArrays(inside(folder, "frames.npz"), "frames.npz") as npz:
        for key in npz.names:
            if key not in FRAME_NAMES:
                raise InputError.said("error.npz_unknown_member", name="frames.npz", member=shortened(key),
                                      allowed=", ".join(FRAME_NAMES))
        if "frame_steps" not in npz.names:
            raise InputError.said("error.frame_steps_missing")
        decoded = npz.whole("frame_steps", steps)
        if any(not 0 <= index < steps for index in decoded) or decoded != sorted(set(decoded)):
            raise InputError.said("error.not_step_indices", name="frames.npz: frame_steps", value=shortened(decoded),
                                  last=steps - 1)
        frames: dict[str, Any] = {"frame_steps": np.array(decoded, np.int64)}
        height, width = size
        for key in ("x_t", "x0") if decoded else ():
            frames[key] = npz.array(key, np.uint8, (len(decoded), height, width, 3),
                                    messages.text("error.allowed_frames", count=len(decoded), height=height,
                                                  width=width))
        for key in ("noise_image", "init_image", "final_image"):
            if key in npz.names:
                frames[key] = npz.array(key, np.uint8, (height, width, 3),
                                        messages.text("error.allowed_image", height=height, width=width))
        return frames


# -- attention.npz -----------------------------------------------------------------------------------------

_GRID = re.compile(r"^([0-9]{1,4})x([0-9]{1,4})$")
_ATTENTION_NAMES = ("maps", "tokens", "kinds", "steps", "latent_hw", "image_hw", "layer_count_keys",
                    "layer_count_values", "negative_tokens", "negative_kinds", "negative_maps")
_BUCKETS = {"cross": "cross", "layer": "layers", "self": "self_attn", "negative": "cross"}  # -> field


def read_attention(path: str | Path, steps: int | None = None, latent_hw: tuple | None = None,
                   image_hw: tuple | None = None, tokens: int = MAX_TOKENS) -> dict[str, Any]:
    """attention.npz (`AttentionMaps.save`) as AttentionMaps' fields, checked; `steps` (the run's count), the
    grids and `tokens` (the most slots) are what a trajectory holds, when the file is one of its parts."""
    path = Path(path)
    with SavedArrays(path, path.name, MAX_ATTENTION_MEMBERS) as npz:
        for key in npz.names:
            if key not in _ATTENTION_NAMES and key.partition(":")[0] not in _BUCKETS:
                raise InputError.said("error.attention_unknown_member", name=npz.name, member=shortened(key),
                                      names=", ".join(_ATTENTION_NAMES),
                                      prefixes=", ".join(f"{prefix}:<key>" for prefix in _BUCKETS))
        fields: dict[str, Any] = {"latent_hw": _pair(npz, "latent_hw", latent_hw),
                                  "image_hw": _pair(npz, "image_hw", image_hw)}
        fields["steps"] = npz.whole("steps", MAX_ENTRIES if steps is None else steps)
        last = MAX_ENTRIES if steps is None else steps
        if any(not 0 <= s < last for s in fields["steps"]) or fields["steps"] != sorted(set(fields["steps"])):
            raise InputError.said("error.not_step_indices", name=f"{npz.name}: steps", value=shortened(fields["steps"]),
                                  last=last - 1)
        fields["tokens"], fields["kinds"] = _words(npz, "", tokens)
        keys = npz.texts("layer_count_keys", 64)
        values = npz.whole("layer_count_values", 64, len(keys))
        for key, value in zip(keys, values):
            _grid(npz, f"layer_count_keys {shortened(key)}", key, None)
            check_int(f"{npz.name}: layer_count_values", value, 0, 10**6)
        fields["layer_counts"] = dict(zip(keys, values))
        fields["negative"] = None
        if "negative_tokens" in npz.names or "negative_kinds" in npz.names:
            fields["negative"] = {**dict(zip(("tokens", "kinds"), _words(npz, "negative_", tokens))), "cross": {}}
        _read_maps(npz, fields)
        return fields


def _pair(npz: SavedArrays, key: str, expected: tuple | None) -> tuple[int, int]:
    pair = tuple(check_int(f"{npz.name}: {key}", value, 1, 4 * MAX_SIDE) for value in npz.whole(key, 2, 2))
    if expected is not None and pair != tuple(expected):
        raise InputError.said("error.not_the_runs", name=npz.name, field=key, pair=pair, allowed=tuple(expected))
    return pair


def _words(npz: SavedArrays, prefix: str, most: int) -> tuple[list[str], list[str]]:
    """The kept slots' tokens and kinds (`prefix` 'negative_' for the negative prompt's)."""
    words = npz.texts(f"{prefix}tokens", most)
    kinds = npz.texts(f"{prefix}kinds", most, len(words))
    for kind in kinds:
        check_choice(f"{npz.name}: {prefix}kinds", kind, TOKEN_KINDS)
    return words, kinds


def _grid(npz: SavedArrays, what: str, key: str, latent_hw: tuple | None) -> str:
    """A grid key ('16x16'), within the latent grid when given."""
    match = _GRID.match(key)
    within = match and all(int(v) >= 1 for v in match.groups()) and (
        latent_hw is None or (int(match[1]) <= latent_hw[0] and int(match[2]) <= latent_hw[1]))
    if not within and latent_hw is None:
        raise InputError.said("error.not_grid", name=npz.name, what=what)
    if not within:
        raise InputError.said("error.not_grid_within", name=npz.name, what=what, height=latent_hw[0],
                              width=latent_hw[1])
    return key


def _read_maps(npz: SavedArrays, fields: dict[str, Any]) -> None:
    """Every prefix:key member, float16 on a grid within the latents': cross, layer and negative (steps, tokens,
    h, w), self (steps, h*w, h*w)."""
    steps, (height, width) = len(fields["steps"]), fields["latent_hw"]
    fields.update(cross={}, layers={}, self_attn={})
    for name in npz.names:
        prefix, _, key = name.partition(":")
        if prefix not in _BUCKETS:
            continue
        if prefix == "negative" and fields["negative"] is None:
            raise InputError.said("error.negative_without_tokens", name=npz.name, member=name)
        words = len((fields["negative"] or {}).get("tokens", ())) if prefix == "negative" else len(fields["tokens"])
        if prefix == "layer":
            check_text(f"{npz.name}: layer name", key, MAX_TOKEN_CHARS)
            shape, _ = npz.header(name)
            grid = f"{shape[2]}x{shape[3]}" if len(shape) == 4 else "?"
        else:
            grid, shape = key, None
        h, w = (int(v) for v in _grid(npz, messages.text("error.grid_of", name=name), grid, (height, width)).split("x"))
        if prefix == "self":
            if h * w > MAX_SELF_POSITIONS:
                raise InputError.said("error.too_many_positions", name=npz.name, member=name, count=h * w,
                                      most=MAX_SELF_POSITIONS)
            expected, allowed = (steps, h * w, h * w), f"(steps={steps}, {h * w}, {h * w})"
        else:
            expected, allowed = (steps, words, h, w), f"(steps={steps}, tokens={words}, {h}, {w})"
        bucket = fields["negative"]["cross"] if prefix == "negative" else fields[_BUCKETS[prefix]]
        bucket[key] = npz.array(name, np.float16, expected, allowed)
