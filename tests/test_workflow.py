"""The Snakemake workflow: plans the full grid offline, lints clean, runs the demo end to end,
caches every stage and fails on bad config with one line naming the key."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run snakemake in workdir; output in .stdout."""
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run."""
    table = output.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def test_full_config_plans_both_thesis_figures_without_network(tmp_path):
    r = snakemake(tmp_path, "--configfile", str(ROOT / "config.yaml"), "-n", "--cores", "8", "--resources", "gpu=2")
    assert r.returncode == 0, r.stderr
    jobs = job_counts(r.stdout + r.stderr)
    assert jobs["train_victim"] == jobs["evaluate_victim"] == jobs["poison_dataset"] == 100
    assert jobs["prepare_data"] == 1 and jobs["plot_heatmap"] == 2


def test_one_figure_plans_only_its_own_victims(tmp_path):
    r = snakemake(tmp_path, "--configfile", str(ROOT / "config.yaml"), "-n", "results/figures/fig3-2.png")
    assert r.returncode == 0, r.stderr
    assert job_counts(r.stdout + r.stderr)["train_victim"] == 50


def test_lint_is_clean():
    r = subprocess.run([*SNAKEMAKE, "--lint", "--configfile", str(ROOT / "config.yaml")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0 and "Congratulations" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["figures"]["fig2-1"].update(rates=[0.5, 1.5]),
     "invalid config: config key 'figures.fig2-1.rates.1': 1.5 is greater than the maximum of 1"),
    (lambda c: c["figures"]["fig3-2"].update(attack="sleeper"),
     "invalid config: config key 'figures.fig3-2.attack': unknown attack 'sleeper'"),
    (lambda c: c["recipes"]["digits_cnn"].update(model="vgg99"),
     "invalid config: config key 'recipes.digits_cnn.model': 'vgg99' is not one of"),
    (lambda c: c["datasets"].update(broken={"source": "imagenet"}),
     "invalid config: config key 'datasets.broken.source': 'imagenet' does not match"),
])
def test_bad_config_fails_with_one_line_naming_the_key(tmp_path, edit, message):
    cfg = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    edit(cfg)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(tmp_path, "--configfile", str(tmp_path / "bad.yaml"), "-n")
    assert r.returncode != 0 and message in r.stdout + r.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo pipeline, run once end to end into a fresh directory."""
    work = tmp_path_factory.mktemp("demo")
    r = snakemake(work, "--configfile", str(ROOT / "config/demo.yaml"), "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


@pytest.mark.slow
def test_demo_draws_both_heatmaps_from_real_training(demo):
    for fig in ("fig2-1", "fig3-2"):
        png = demo / "results/figures" / f"{fig}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gu = pd.read_csv(demo / "results/tables/fig2-1.csv")
    lc = pd.read_csv(demo / "results/tables/fig3-2.csv")
    assert len(gu) == len(lc) == 15 and gu["clean_accuracy"].min() > 0.95
    at_25 = gu[gu["rate"] == 0.25]
    assert at_25["asr_labelled"].mean() >= 0.9, at_25
    assert lc[lc["rate"] == 0.25]["asr_labelled"].mean() < at_25["asr_labelled"].mean() - 0.5
    assert ((gu["fraction_of_class"] - gu["rate"]).abs() < 0.005).all()  # count = round(rate x class size)
    every = pd.read_csv(demo / "results/tables/all_victims.csv")
    assert len(every) == 30 and set(every["method"]) == {"badnets", "label_consistent"}


@pytest.mark.slow
def test_second_run_does_nothing(demo):
    r = snakemake(demo, "--configfile", str(ROOT / "config/demo.yaml"), "--cores", "2")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("edit, reruns, kept", [
    (lambda c: c["recipes"]["digits_cnn"].update(epochs=5), {"train_victim": 30, "evaluate_victim": 30},
     {"poison_dataset", "prepare_data"}),
    (lambda c: c["triggers"]["gu"].update(amplitude=64), {"poison_dataset": 30, "train_victim": 30},
     {"prepare_data"}),
    (lambda c: c["figures"]["fig3-2"].update(title="renamed"), {"plot_heatmap": 1},
     {"train_victim", "aggregate_metrics"}),
])
def test_touching_one_parameter_reruns_only_what_depends_on_it(demo, tmp_path, edit, reruns, kept):
    cfg = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    edit(cfg)
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(demo, "--configfile", str(tmp_path / "edited.yaml"), "-n")
    jobs = job_counts(r.stdout + r.stderr)
    assert {k: jobs.get(k) for k in reruns} == reruns and not kept & set(jobs)


def test_a_broken_dataset_archive_fails_its_job_with_one_line_naming_the_array(tmp_path):
    import numpy as np

    np.savez(tmp_path / "broken.npz", x_train=np.zeros((4, 8, 8, 1), np.float32), y_train=np.arange(4),
             x_test=np.zeros((2, 8, 8, 1), np.uint8), y_test=np.arange(2))
    cfg = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    cfg["datasets"]["broken"] = {"source": f"npz:{tmp_path / 'broken.npz'}"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(tmp_path, "--configfile", str(tmp_path / "c.yaml"), "--cores", "1", "results/data/broken.npz")
    assert r.returncode != 0
    assert "error: ArtifactError: " in r.stderr and "array 'x_train' has dtype float32" in r.stderr
    assert not (tmp_path / "results/data/broken.npz").exists()


@pytest.mark.slow
@pytest.mark.parametrize("module, reruns, kept", [
    ("evaluate", {"evaluate_victim": 30}, {"train_victim", "poison_dataset"}),
    ("attacks", {"poison_dataset": 30, "train_victim": 30}, {"prepare_data"}),
])
def test_editing_library_code_reruns_the_stages_that_run_it(demo, tmp_path, module, reruns, kept):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "workflow", copy / "workflow")
    shutil.copy(ROOT / "Snakefile", copy)
    with open(copy / f"src/pipeline_lib/{module}.py", "a") as f:
        f.write("\n# an edit\n")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(copy / "Snakefile"), "--directory", str(demo),
                        "--configfile", str(ROOT / "config/demo.yaml"), "-n"], capture_output=True, text=True)
    jobs = job_counts(r.stdout + r.stderr)
    assert {k: jobs.get(k) for k in reruns} == reruns and not kept & set(jobs)
