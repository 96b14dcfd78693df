"""The files the app hands to gradio (frames, downloads): written once, pruned, removed at exit.

gradio copies every file a handler returns into its own cache and serves that
copy; it writes arrays it is given to a path named by their content, in place,
so two identical images (the last frame and the final image, or two users with
the same seed) were rewritten while a browser was reading them
(ERR_CONTENT_LENGTH_MISMATCH). Here each image is written once, atomically, to a
path named by its content, and gradio finds its copy already there.

Every folder the store owns (its own, and gradio's cache when the app made it)
is pruned on a timer: files older than `max_age` seconds go, then the oldest
until the total is under `max_bytes`, sparing those written in the last
`GRACE_SECONDS` (a handler has returned them and gradio is copying them). Empty
folders go once older than `max_age`: a handler makes its folder, then decodes
for a while before it writes there. At exit the folders are removed.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("sdviz.app")
PRUNE_SECONDS = 30.0  # how often the folders are pruned
GRACE_SECONDS = 5.0  # a file this new is kept over the size cap: it is on its way to gradio


def exit_on_sigterm() -> None:
    """A host stops the app with SIGTERM: exit as for Ctrl-C, so that the folders are removed (atexit). A
    second SIGTERM while they are being removed is ignored, not raised inside the atexit handlers (which
    printed a traceback and left the rest of the files)."""

    def handler(*_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(0)

    signal.signal(signal.SIGTERM, handler)


class FileStore:
    def __init__(self, max_age: float, max_bytes: int, also_owned: list[Path] | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="sdviz-files-"))
        self.owned = [self.root, *(also_owned or [])]
        self.max_age, self.max_bytes = max_age, max_bytes
        self._stop = threading.Event()
        threading.Thread(target=self._prune_every, name="sdviz-prune", daemon=True).start()
        atexit.register(self.remove)

    def image(self, frame) -> str:
        """A uint8 (H, W, 3) frame as a PNG file named by its content; written once, atomically."""
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
        data = buffer.getvalue()
        path = self.root / "frames" / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            self._write(path, data)
        else:
            os.utime(path)  # in use again: pruned by its last use
        return str(path)

    def new_folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root))

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)

    def prune(self) -> None:
        """Removes files older than max_age, then the oldest until the total is under max_bytes (sparing the
        last GRACE_SECONDS' files), then empty folders older than max_age."""
        now = time.time()
        files = []
        for root in self.owned:
            for path in root.rglob("*"):
                try:
                    stat = path.stat()
                except OSError:  # removed meanwhile
                    continue
                if path.is_file():
                    files.append((stat.st_mtime, stat.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        for mtime, size, path in files:
            age = now - mtime
            if age < GRACE_SECONDS or (age <= self.max_age and total <= self.max_bytes):
                break
            path.unlink(missing_ok=True)
            total -= size
        for root in self.owned:  # empty folders left behind
            for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                try:
                    if now - folder.stat().st_mtime > self.max_age:
                        folder.rmdir()
                except OSError:  # not empty, or removed meanwhile
                    pass

    def _prune_every(self) -> None:
        while not self._stop.wait(min(PRUNE_SECONDS, self.max_age / 2)):
            try:
                self.prune()
            except OSError:
                log.exception("pruning the app's files failed")

    def remove(self) -> None:
        self._stop.set()
        for root in self.owned:
            shutil.rmtree(root, ignore_errors=True)
