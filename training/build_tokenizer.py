"""Builds the CLIP tokenizer files (vocab.json, merges.txt) from OpenAI's BPE merges.

The embedded model uses the real CLIP vocabulary (49408 tokens, 77 positions), so
its token view is exactly Stable Diffusion's. OpenAI's merges ship inside the
`open_clip_torch` wheel as `open_clip/bpe_simple_vocab_16e6.txt.gz`; this script
reads that file (or the wheel itself) and writes the Hugging Face format:

    pip download --no-deps -d /tmp/oc open_clip_torch
    python -m training.build_tokenizer /tmp/oc/open_clip_torch-*.whl assets/sdviz-shapes/tokenizer
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
MAX_LENGTH = 77  # CLIP's context length, which Stable Diffusion's tokenizer keeps
N_MERGES = 49152 - 256 - 2  # as in CLIP's simple_tokenizer.py
START, END = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from bytes to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def read_merges(source: Path) -> list[str]:
    """The merge lines, from the .txt.gz itself or from a wheel that contains it."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            member = next(n for n in wheel.namelist() if n.endswith(BPE_NAME))
            raw = wheel.read(member)
    else:
        raw = source.read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    return lines[1 : N_MERGES + 1]  # the first line is a version header


def build(source: Path, out_dir: Path) -> int:
    merges = read_merges(source)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += [START, END]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(
        json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False)
    )
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": START,
        "eos_token": END,
        "unk_token": END,
        "pad_token": END,  # Stable Diffusion 1.x pads with the end token
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": START, "eos_token": END, "unk_token": END, "pad_token": END}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return len(vocab)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help=f"{BPE_NAME} or an open_clip_torch wheel")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    size = build(args.source, args.out_dir)
    print(f"wrote {size} tokens to {args.out_dir}")


if __name__ == "__main__":
    main()
