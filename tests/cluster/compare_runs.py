"""The SLURM run went through SLURM and produced the local run's results.

Usage: python compare_runs.py LOCAL_DIR SLURM_DIR. Exits non-zero naming the first difference.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TIMING = ["train_seconds", "device"]  # table columns: wall time and device name legitimately differ between runs


def untimed(obj: object) -> object:
    """A JSON value without its wall-clock entries (keys 'seconds', '*_seconds') and device names."""
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if not (k.endswith("seconds") or k == "device")}
    if isinstance(obj, list):
        return [untimed(v) for v in obj]
    return obj


def npz_equal(a: Path, b: Path) -> bool:
    """Same arrays under the same names."""
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        return sorted(x.files) == sorted(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)


def main(local: Path, slurm: Path) -> None:
    """Compare every array, metric and table of the two runs; check SLURM wrote a log per submitted job."""
    logs = sorted((slurm / "slurm-logs").rglob("*.log"))
    submitted = {p.relative_to(slurm / "slurm-logs").parts[0].removeprefix("rule_") for p in logs}
    assert {"train_cohort", "evaluate_cohort"} <= submitted, f"no SLURM logs for the GPU rules, only {submitted}"
    assert not submitted & {"aggregate_metrics", "prepare_data"}, f"local rules went to SLURM: {submitted}"
    files = sorted(p.relative_to(local) for p in (local / "results").rglob("*") if p.suffix in {".npz", ".csv"}
                   or p.name == "metrics.json")
    assert files, f"the local run in {local} produced no results"
    for rel in files:
        a, b = local / rel, slurm / rel
        assert b.exists(), f"{rel} missing from the SLURM run"
        if rel.suffix == ".npz":
            assert npz_equal(a, b), f"{rel} differs"
        elif rel.suffix == ".csv":
            pd.testing.assert_frame_equal(pd.read_csv(a).drop(columns=TIMING, errors="ignore"),
                                          pd.read_csv(b).drop(columns=TIMING, errors="ignore"), obj=str(rel))
        else:
            assert untimed(json.loads(a.read_text())) == untimed(json.loads(b.read_text())), f"{rel} differs"
    print(f"{len(files)} result files equal; {len(logs)} SLURM job logs for rules {sorted(submitted)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
