"""Advisory file locks between tuneoff processes (flock: the kernel drops a lock when its process
dies, so a `kill -9` never leaves a stale one).

    with hold(path, what="training into out/"):   # a second process gets a TuneoffError
        ...
    with hold(path, wait=True, waiting=print):    # a second process waits its turn
        ...
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import TuneoffError


@contextmanager
def hold(path: Path | None, what: str = "this work", wait: bool = False,
         waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created with its folder) for the block; `None`: no lock.

    Without `wait`, a lock held by another process is a `TuneoffError` that names its pid; with it,
    `waiting` is told once and the call blocks until the other process finishes or dies.
    """
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only place: nothing can be written there anyway, and no one to race
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if not wait:
                raise TuneoffError(f"another tuneoff process (pid {holder}) is {what}", file=str(path.parent),
                                   hint="wait for it to finish, or stop it; a killed process frees the lock") from None
            if waiting:
                waiting(f"waiting for tuneoff process {holder}, which is {what}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock
