"""The GPU check's smoke mode (bench/gpu_check.py --smoke): every part reports its figures on the CPU, without
opacus or Snakemake importable, so the script cannot rot while no GPU is at hand."""
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, load_config

sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402


def test_smoke_run_reports_every_part_prints_the_table_and_writes_the_json(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    for package in ("opacus", "snakemake"):  # absent on the GPU machine
        (blocked / package).mkdir(parents=True)
        (blocked / package / "__init__.py").write_text(f"raise ImportError('{package} is blocked in this test')")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "PYTHONPATH": str(blocked)}
    run = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "FAILED" not in run.stdout, run.stdout
    table = run.stdout.split("gpu_check: ")[-1]
    for part in "abcde":
        assert f"\n{part}  " in table, f"part {part} missing from the table:\n{table}"
    figures = json.loads((out / "gpu_check.json").read_text())["parts"]
    assert sorted(figures) == list("abcde")
    assert not [p for p, f in figures.items() if "error" in f]
    assert figures["d"]["equivalent"]  # the smoke test's 'GPU' is the CPU: bit-identical runs
    assert figures["e"]["total_hours"] > 0 and figures["e"]["groups"]


def test_schema_defaults_are_filled_as_snakemake_fills_them() -> None:
    assert gpu_check.load_config(ROOT / "config.yaml") == load_config("config.yaml")


def test_config_facts_travel_as_json() -> None:
    facts = gpu_check.config_facts(ROOT / "config.yaml")
    assert json.loads(json.dumps(facts)) == facts
    kinds = {job["kind"] for job in facts["jobs"]}
    assert kinds == {"cohort", "surrogate", "gan", "input_aware"}
    assert facts["dp"]["spec"]["microbatches"] == 16
