"""The GPU check (bench/gpu_check.py): its smoke run applies every GPU option on the CPU and reports every part from
the bundle on torch and numpy alone, so the script cannot rot while no GPU is at hand."""
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, load_config

sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402

# what a bare GPU machine lacks (it has torch and numpy)
BLOCKED = ("yaml", "pandas", "snakemake", "opacus", "sklearn", "scipy", "matplotlib", "seaborn", "jsonschema",
           "torchvision")
DEVICE_COMMAND = "python bench/gpu_check.py"  # docs/gpu-and-cluster.md's command for the device machine


def errors(figures, where=""):
    """Every error row anywhere in a part's figures."""
    if isinstance(figures, dict):
        found = [f"{where}: {figures['error']}"] if "error" in figures else []
        return found + [e for k, v in figures.items() for e in errors(v, f"{where}.{k}")]
    if isinstance(figures, list):
        return [e for i, v in enumerate(figures) for e in errors(v, f"{where}[{i}]")]
    return []


def test_smoke_run_from_the_bundle_on_torch_and_numpy_alone_reports_every_part_without_an_error(tmp_path: Path):
    bundle = tmp_path / "bundle"
    gpu_check.write_bundle(ROOT / "config.yaml", None, bundle)
    blocked = tmp_path / "blocked"
    for package in BLOCKED:
        (blocked / package).mkdir(parents=True)
        (blocked / package / "__init__.py").write_text(f"raise ImportError('{package} is blocked in this test')")
    out = tmp_path / "out"
    out.mkdir()
    assert f"    {DEVICE_COMMAND}\n" in (ROOT / "docs/gpu-and-cluster.md").read_text()
    env = {**os.environ, "OUT": str(out), "PYTHONPATH": str(blocked)}
    run = subprocess.run([sys.executable, *DEVICE_COMMAND.split()[1:], "--smoke", "--bundle-dir", str(bundle)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "FAILED" not in run.stdout and "SKIPPED" not in run.stdout, run.stdout
    table = run.stdout.split("gpu_check: ")[-1]
    for part in "abcde":
        assert f"\n{part}  " in table, f"part {part} missing from the table:\n{table}"
    figures = json.loads((out / "gpu_check.json").read_text())["parts"]
    assert sorted(figures) == list("abcde")
    assert not errors(figures), errors(figures)
    assert len(figures["a"]["variants"]) == len(figures["b"]["runs"]) == len(gpu_check.VARIANTS)
    rows = [figures["d"]["fp32_repeat"]] + figures["d"]["rows"]
    assert all(r["steps_ok"] for r in rows), rows  # every option within its stated bound of fp32's first steps
    assert all(r["gap"] > 0 for r in rows if "bf16" in r["accel"])  # the options acted
    projected = figures["e"]
    assert projected["complete"] and projected["total_hours"] > 0
    assert any("FLOPs" in g["basis"] for g in projected["groups"].values())  # torchvision's models, from the bundle


def test_one_failing_measurement_is_an_error_row_and_the_rest_are_measured():
    share = gpu_check.Share(60)
    rows = [gpu_check.guarded(share, measure, accel=name) for name, measure in
            (("fp32", lambda: {"seconds": 1.0}), ("bf16", lambda: 1 / 0), ("cl", lambda: {"seconds": 2.0}))]
    assert [r.get("seconds") for r in rows] == [1.0, None, 2.0]
    assert rows[1]["error"] == "ZeroDivisionError: division by zero" and rows[1]["accel"] == "bf16"
    assert gpu_check.guarded(gpu_check.Share(-1), lambda: {"seconds": 1.0})["error"].startswith("skipped")


def test_schema_defaults_are_filled_as_snakemake_fills_them() -> None:
    assert gpu_check.load_config(ROOT / "config.yaml") == load_config("config.yaml")


def test_config_facts_travel_as_json() -> None:
    facts = gpu_check.config_facts(ROOT / "config.yaml")
    assert json.loads(json.dumps(facts)) == facts
    kinds = {job["kind"] for job in facts["jobs"]}
    assert kinds == {"cohort", "surrogate", "gan", "input_aware"}
    assert facts["dp"]["spec"]["microbatches"] == 16
    assert set(facts["flops"]) == {gpu_check.flops_key(j["recipe"], j["shape"]) for j in facts["jobs"] if "recipe" in j}
