"""Job logging for workflow scripts: output to the rule's log file, progress of long loops, failures as one clear
line."""
from __future__ import annotations

import io
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from .locks import holder, try_lock


class _LogFile(io.TextIOWrapper):
    """A line-buffered text log whose write errors (a full disk) name the log file."""

    def write(self, text: str) -> int:
        """Write, naming this file in any error."""
        try:
            return super().write(text)
        except OSError as e:
            raise OSError(e.errno, e.strerror, self.buffer.name) from None


def error_line(e: BaseException) -> str:
    """`error: <type>: <message>` on one line (a multi-line message joined), at most 500 characters."""
    text = " ".join(str(e).split())
    return f"error: {type(e).__name__}: {text[:500] + '...' if len(text) > 500 else text}"


class JobLockError(RuntimeError):
    """The job lock is held by another process running the same job (one a killed Snakemake left behind), or cannot
    be taken."""


def job_lock(path: Path) -> int:
    """A descriptor holding `.<log name>.lock` beside the job's log (Snakemake deletes the log itself before a job,
    never this file) until it is closed or the process ends: two processes never run one job, so never write one
    output folder."""
    lock = path.with_name(f".{path.name}.lock")
    fd = try_lock(lock, "job lock", JobLockError)
    if fd is None:
        raise JobLockError(f"{path}: this job is still running ({holder(lock)}), e.g. left running by a killed "
                           "Snakemake, which has removed its outputs; kill that process, then rerun")
    return fd


@contextmanager
def job_log(path: str | Path) -> Iterator[None]:
    """Send the job's output to `path`, once no other process runs the same job (job_lock); on failure log the
    traceback and end both the log and stderr with one `error:` line (which says so when the log itself could not
    be written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    real_stderr = sys.stderr
    try:
        lock = job_lock(path)
    except JobLockError as e:  # before opening the log: the running job keeps writing to its own
        print(error_line(e), file=real_stderr)
        raise SystemExit(1) from None
    log = _LogFile(open(path, "wb"), encoding="utf-8", line_buffering=True)
    try:
        with redirect_stdout(log), redirect_stderr(log):
            yield
    except Exception as e:
        line = error_line(e)
        try:
            traceback.print_exc(file=log)
            print(f"{line} (details in {path})", file=log)  # the log's last line, for --show-failed-logs
            where = f"details in {path}"
        except OSError as w:
            where = f"the log {path} could not be written: {w.strerror}"
        print(f"{line} ({where})", file=real_stderr)
        raise SystemExit(1) from None
    finally:
        try:
            log.close()
        except OSError:
            pass  # a full disk: the error line on stderr has said so
        os.close(lock)
def _duration(seconds: float) -> str:
    """Seconds as '1h02m', '3m05s' or '12s'."""
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Logs 'what: done/total unit (pct), rate, time left' every `interval` seconds and once at the end, to the
    job's log (stdout); it only reads the clock, so it never waits for the GPU."""

    def __init__(self, what: str, total: int, unit: str = "steps", interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit, self.interval, self.clock = what, total, unit, interval, clock
        self.start = self.last = clock()

    def update(self, done: int) -> None:
        """Report `done` of `total` if the interval has passed or the work is complete."""
        now = self.clock()
        if done < self.total and now - self.last < self.interval:
            return
        self.last, elapsed = now, max(now - self.start, 1e-9)
        rate = done / elapsed
        left = _duration((self.total - done) / rate) if rate > 0 else "unknown"
        print(f"{self.what}: {done}/{self.total} {self.unit} ({100 * done / max(self.total, 1):.0f}%), "
              f"{rate:.3g} {self.unit}/s, {left} left", flush=True)
