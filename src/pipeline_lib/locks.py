"""Exclusive file locks (flock) that a process holds while it works and the kernel releases when it exits, even
after kill -9; each lock file says who holds it. Torch-free: every job takes one."""
from __future__ import annotations

import fcntl
import os
import socket
import stat
import time
from pathlib import Path


def holder(path: Path) -> str:
    """Who holds a lock, as its holder wrote it (read without following links)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return f"unknown ({e.strerror})"
    try:
        return os.read(fd, 200).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)


def try_lock(path: Path, what: str, error: type[Exception]) -> int | None:
    """An open descriptor holding an exclusive lock on `path` (`what` it locks, for messages), or None when another
    process holds it; the file is never truncated before the lock is ours, and a link or a non-file in its place is
    refused with `error`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as e:
        raise error(f"{path}: cannot open the {what} ({e.strerror}), refused") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{path}: the {what} is not a regular file, refused")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    return fd
