"""Device placement: a GPU per training job, leased through lock files, or the SLURM allocation."""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

LOCK_DIR = Path(os.environ.get("PIPELINE_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "pipeline_lib-gpu-locks"))


@contextmanager
def lease_gpu(n_devices: int, lock_dir: Path = LOCK_DIR, poll_seconds: float = 2.0) -> Iterator[int]:
    """Hold an exclusive lock on one of n_devices GPU indices for the duration of the block.

    Snakemake's `--resources gpu=N` only counts jobs; the lock makes concurrent jobs on one
    machine land on different GPUs. The lock is released when the process exits, even on a crash.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for i in range(n_devices):
            f = open(lock_dir / f"gpu{i}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            try:
                yield i
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
            return
        time.sleep(poll_seconds)


def lease_dir() -> Path:
    """Where leases live: one pool per machine, or one per SLURM allocation, whose GPUs are its own."""
    job = os.environ.get("SLURM_JOB_ID")
    return LOCK_DIR / f"slurm-{job}" if job else LOCK_DIR


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
