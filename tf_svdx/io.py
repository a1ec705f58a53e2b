"""Atomic output: write under a temporary name in the same folder, then rename into place.

A killed job therefore never leaves a half-written file (or folder) under its final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, directory: bool = False):
    """Yield a temporary sibling path; on success fsync and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd_or_dir = (tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                 if directory else None)
    if directory:
        tmp = Path(fd_or_dir)
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if not directory:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        elif path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                       encoding="utf-8")


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete `.*.tmp` leftovers of killed writers in `folder`; returns how many."""
    n = 0
    for p in Path(folder).glob(".*.tmp"):
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        n += 1
    return n
