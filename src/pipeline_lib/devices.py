"""Device placement: a GPU per training job, leased through lock files, or the SLURM allocation."""
from __future__ import annotations

import fcntl
import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# one private folder per user: another user can neither plant links in it nor hold its locks
LOCK_DIR = Path(os.environ.get("PIPELINE_GPU_LOCK_DIR",
                               Path(tempfile.gettempdir()) / f"pipeline_lib-gpu-locks-{os.getuid()}"))
# how long a job waits for a free GPU before failing with the names of the lock holders
LOCK_TIMEOUT = float(os.environ.get("PIPELINE_GPU_LOCK_TIMEOUT", 6 * 3600))


class LockError(RuntimeError):
    """The lock folder is unsafe, or no GPU came free in time; the message names the folder and the holders."""


def private_dir(path: Path) -> Path:
    """Create `path` (mode 0700) or accept it only as a real folder of this user that no one else may write."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise LockError(f"{path}: the GPU lock folder is not a folder (a link?), refused; set PIPELINE_GPU_LOCK_DIR")
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise LockError(f"{path}: the GPU lock folder belongs to uid {st.st_uid} with mode "
                        f"{stat.S_IMODE(st.st_mode):o}; it must be yours and closed to others (set "
                        "PIPELINE_GPU_LOCK_DIR or chmod 700 it)")
    return path


def _holder(path: Path) -> str:
    """Who holds a lock, as its holder wrote it (read without following links)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return f"unknown ({e.strerror})"
    try:
        return os.read(fd, 200).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on `path`, or None when another process holds it; the file
    is never truncated before the lock is ours, and a link in its place is refused."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as e:
        raise LockError(f"{path}: cannot open the GPU lock ({e.strerror}), refused") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockError(f"{path}: the GPU lock is not a regular file, refused")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    return fd


@contextmanager
def lease_gpu(n_devices: int, lock_dir: Path = LOCK_DIR, poll_seconds: float = 2.0,
              timeout: float = LOCK_TIMEOUT) -> Iterator[int]:
    """Hold an exclusive lock on one of n_devices GPU indices for the duration of the block.

    Snakemake's `--resources gpu=N` only counts jobs; the lock makes concurrent jobs on one
    machine land on different GPUs. The lock is released when the process exits, even on a crash.
    After `timeout` seconds without a free GPU, LockError names who holds each lock.
    """
    private_dir(lock_dir)
    deadline = time.monotonic() + timeout
    while True:
        for i in range(n_devices):
            fd = _try_lock(lock_dir / f"gpu{i}.lock")
            if fd is None:
                continue
            try:
                yield i
            finally:
                os.close(fd)  # releases the lock
            return
        if time.monotonic() >= deadline:
            held = "; ".join(f"gpu{i}: {_holder(lock_dir / f'gpu{i}.lock')}" for i in range(n_devices))
            raise LockError(f"no GPU came free in {timeout:g} s (locks in {lock_dir}: {held}); "
                            "PIPELINE_GPU_LOCK_TIMEOUT sets the wait")
        time.sleep(poll_seconds)


def lease_dir() -> Path:
    """Where leases live: one pool per machine, or one per SLURM allocation, whose GPUs are its own."""
    job = os.environ.get("SLURM_JOB_ID")
    return private_dir(LOCK_DIR) / f"slurm-{job}" if job else LOCK_DIR


@contextmanager
def acquire() -> Iterator[torch.device]:
    """The device a job should use: a GPU leased among the visible ones, or the CPU.

    Inside a SLURM job CUDA_VISIBLE_DEVICES already holds only the allocated GPUs, so the job leases
    among those alone and never waits on another job's lock on the same node.
    """
    if not torch.cuda.is_available():
        yield torch.device("cpu")
    else:
        with lease_gpu(torch.cuda.device_count(), lease_dir()) as i:
            yield torch.device(f"cuda:{i}")
