"""Device placement: a GPU per training job (or a share of one), leased through lock files keyed by the GPU's
identity, among the GPUs the job sees (under SLURM, its allocation); the CPU where there is no CUDA."""
from __future__ import annotations

import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from .locks import holder, try_lock

# one private folder per user: another user can neither plant links in it nor hold its locks
LOCK_DIR = Path(os.environ.get("PIPELINE_GPU_LOCK_DIR",
                               Path(tempfile.gettempdir()) / f"pipeline_lib-gpu-locks-{os.getuid()}"))
# how long a job waits for a free GPU before failing with the names of the lock holders
LOCK_TIMEOUT = float(os.environ.get("PIPELINE_GPU_LOCK_TIMEOUT", 6 * 3600))


class DeviceError(RuntimeError):
    """A job cannot have the device it was promised, or a device setting is malformed; the message says which."""


class LockError(DeviceError):
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


@contextmanager
def lease_gpu(devices: Sequence[str], lock_dir: Path = LOCK_DIR, slots: int = 1, poll_seconds: float = 2.0,
              timeout: float = LOCK_TIMEOUT) -> Iterator[int]:
    """Hold an exclusive lock on one of `slots` places on one of the GPUs named by their stable identities, for
    the duration of the block; yields that GPU's position in `devices`.

    Snakemake's `--resources gpu=N` only counts jobs; the lock makes concurrent jobs on one machine land on
    different GPUs. It is keyed by the GPU's identity, not its index: jobs that each see their own GPU as index 0
    (SLURM steps, CUDA_VISIBLE_DEVICES) never wait on each other, jobs that see one GPU under different indices
    never share it. The lock is released when the process exits, even on a crash. After `timeout` seconds
    without a free place, LockError names who holds each lock.
    """
    private_dir(lock_dir)
    paths = [[lock_dir / f"gpu-{name}.{slot}.lock" for slot in range(slots)] for name in devices]
    deadline = time.monotonic() + timeout
    while True:
        for slot in range(slots):  # fill every GPU's first place before any GPU's second
            for i, places in enumerate(paths):
                fd = try_lock(places[slot], "GPU lock", LockError)
                if fd is None:
                    continue
                try:
                    yield i
                finally:
                    os.close(fd)  # releases the lock
                return
        if time.monotonic() >= deadline:
            held = "; ".join(f"{p.name}: {holder(p)}" for places in paths for p in places)
            raise LockError(f"no GPU came free in {timeout:g} s (locks in {lock_dir}: {held}); "
                            "PIPELINE_GPU_LOCK_TIMEOUT sets the wait, PIPELINE_GPU_JOBS_PER_DEVICE the jobs per GPU")
        time.sleep(poll_seconds)


def identity(index: int) -> str:
    """A visible GPU's stable name: its UUID (the same under every CUDA_VISIBLE_DEVICES), as a file-name part."""
    props = torch.cuda.get_device_properties(index)
    name = str(getattr(props, "uuid", "") or f"{socket.gethostname()}-pci-{props.pci_bus_id:x}-{props.pci_device_id:x}")
    return "".join(c if c.isalnum() or c == "-" else "_" for c in name)


def env_setting(name: str, default: str, allowed: Sequence[str] | None = None) -> str:
    """An environment variable's value, refused with one line naming it when not among `allowed`."""
    value = os.environ.get(name, default).strip() or default
    if allowed is not None and value not in allowed:
        raise DeviceError(f"{name}={value!r}: must be one of {', '.join(allowed)}")
    return value


def jobs_per_gpu() -> int:
    """How many jobs may share one GPU (PIPELINE_GPU_JOBS_PER_DEVICE, default 1)."""
    text = env_setting("PIPELINE_GPU_JOBS_PER_DEVICE", "1")
    if not text.isdigit() or int(text) < 1:
        raise DeviceError(f"PIPELINE_GPU_JOBS_PER_DEVICE={text!r}: must be a whole number of jobs, at least 1")
    return int(text)


def granted() -> str | None:
    """What says this job was given GPUs (a SLURM GPU allocation, CUDA_VISIBLE_DEVICES naming devices, or
    PIPELINE_GPU_REQUIRE=1), or None."""
    if env_setting("PIPELINE_GPU_REQUIRE", "0", ("0", "1")) == "1":
        return "PIPELINE_GPU_REQUIRE=1"
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(var, "").strip()
        if value and value not in ("-1", "NoDevFiles"):
            return f"{var}={value}"
    return None


def cpu_in_place_of_gpu() -> torch.device:
    """The CPU for a job that finds no CUDA: refused with one line where the job was given a GPU, unless
    PIPELINE_GPU_FALLBACK=cpu, which says loudly that it trains on the CPU instead."""
    reason = granted()
    if reason is None:
        return torch.device("cpu")
    why = (f"this torch ({torch.__version__}) has no CUDA support" if torch.version.cuda is None
           else "torch sees no CUDA device (driver, or no device in this job's cgroup)")
    if env_setting("PIPELINE_GPU_FALLBACK", "none", ("none", "cpu")) == "cpu":
        print(f"WARNING: this job was given a GPU ({reason}) but {why}; it trains on the CPU "
              "(PIPELINE_GPU_FALLBACK=cpu)", file=sys.stderr, flush=True)
        return torch.device("cpu")
    raise DeviceError(f"this job was given a GPU ({reason}) but {why}; set PIPELINE_GPU_FALLBACK=cpu to train on "
                      "the CPU instead")


@contextmanager
def acquire() -> Iterator[torch.device]:
    """The device a job should use: a GPU leased among the visible ones by identity and made current, or the CPU.

    Inside a SLURM job CUDA_VISIBLE_DEVICES already holds only the allocated GPUs, so the job leases among those
    alone; their identities keep it from waiting on another job's lock on the same node.
    """
    if not torch.cuda.is_available():
        yield cpu_in_place_of_gpu()
        return
    names = [identity(i) for i in range(torch.cuda.device_count())]
    with lease_gpu(names, LOCK_DIR, jobs_per_gpu()) as i:
        device = torch.device("cuda", i)
        torch.cuda.set_device(device)  # libraries that use 'cuda' unindexed land on the leased GPU
        yield device
