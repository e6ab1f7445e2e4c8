"""Job logging for workflow scripts: output to the rule's log file, failures as one clear line."""
from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path


@contextmanager
def job_log(path: str | Path) -> Iterator[None]:
    """Send the job's output to `path`; on failure log the traceback and print one line to stderr."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    real_stderr = sys.stderr
    with open(path, "w") as log, redirect_stdout(log), redirect_stderr(log):
        try:
            yield
        except Exception as e:
            traceback.print_exc()
            print(f"error: {type(e).__name__}: {e} (details in {path})", file=real_stderr)
            raise SystemExit(1) from None
