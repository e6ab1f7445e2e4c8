"""The Snakemake workflow: plans the full grid offline, lints clean, runs the demo end to end,
caches every stage and fails on bad config with one line naming the key."""
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError

from conftest import ROOT, load_config, load_config_dict, raw_config
from pipeline_lib import layout
from pipeline_lib.config import cohort_plan, figure_victims, schema_error_line, trained_victims
from pipeline_lib.layout import AttackerModel, Victim

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run snakemake in workdir; output in .stdout."""
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run."""
    table = output.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


@pytest.mark.parametrize("script", sorted((ROOT / "workflow/scripts").glob("*.py")), ids=lambda p: p.stem)
def test_every_rule_script_imports_names_the_library_defines(script):
    import importlib

    for module, names in re.findall(r"^from (pipeline_lib[\w.]*) import (.+)$", script.read_text(), re.M):
        lib = importlib.import_module(module)
        assert all(hasattr(lib, n.strip()) for n in names.split(",")), (script.name, module, names)


def test_full_config_plans_every_figure_without_network(tmp_path):
    r = snakemake(tmp_path, "--configfile", str(ROOT / "config.yaml"), "-n", "--cores", "8", "--resources", "gpu=2")
    assert r.returncode == 0, r.stderr
    jobs = job_counts(r.stdout + r.stderr)
    cfg = load_config("config.yaml")
    victims = {v for f in cfg["figures"] for v in figure_victims(cfg, f) if not isinstance(v, AttackerModel)}
    assert jobs["link_victim"] == len(victims) > 500 and jobs["evaluate_attacker"] == 1  # the 003 seed's own row
    assert jobs["train_cohort"] == jobs["evaluate_cohort"] < len(victims) / 4  # cohorts of up to cohort_size
    assert jobs["train_surrogate"] == 10 and jobs["train_gan"] == jobs["encode_class"] == 10
    assert jobs["prepare_data"] == 5 and jobs["plot_examples"] == 9 and jobs["plot_heatmap"] == 10
    assert jobs["plot_lines"] == 9 and jobs["plot_defence_heatmap"] == 8 and jobs["plot_tsne"] == 2
    assert jobs["train_input_aware"] == 1  # one trained trigger serves both input-aware poison sets


def test_slurm_profile_plans_the_full_grid_with_a_gpu_per_training_job(tmp_path):
    r = snakemake(tmp_path, "--configfile", str(ROOT / "config.yaml"), "--profile", str(ROOT / "profiles/slurm"), "-n")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert sum(job_counts(out).values()) == sum(job_counts(snakemake(
        tmp_path, "--configfile", str(ROOT / "config.yaml"), "-n").stdout).values())
    jobs: dict[str, list[str]] = {}
    for m in re.finditer(r"^rule (\w+):.*?resources: ([^\n]*)", out, re.M | re.S):
        jobs.setdefault(m[1], []).append(m[2])
    for rule in ("train_cohort", "evaluate_cohort", "train_surrogate", "train_gan", "perturb_class"):
        assert all("gpu=1" in r and "mem_mb=8000" in r for r in jobs[rule]), rule
    assert any("gpu=1" in r for r in jobs["perturb_classes"])  # PGD's; pixel-space perturbations ask for none
    assert all("runtime=720" in r for r in jobs["train_gan"])
    assert not any("gpu" in r for r in jobs["plot_heatmap"] + jobs["link_victim"])


@pytest.mark.parametrize("figure, expected", [
    # one surrogate, whose perturbation of every class serves all 5 rates
    ("fig3-8", {"train_surrogate": 1}),
    # six radii from the two robust surrogates
    ("fig3-6", {"train_surrogate": 2}),
    # a GAN and an encoding per class pair
    ("fig3-7", {"train_gan": 10, "encode_class": 10}),
    # the trusted filter and the l2 robust surrogate; a GAN for the target class
    ("fig3-1", {"train_surrogate": 2, "score_training_set": 3, "poison_dataset": 3, "train_gan": 1}),
])
def test_one_figure_plans_only_what_it_needs_and_perturbs_each_class_once(tmp_path, figure, expected):
    r = snakemake(tmp_path, "--configfile", str(ROOT / "config.yaml"), "-n", f"results/figures/{figure}.png")
    assert r.returncode == 0, r.stderr
    jobs = job_counts(r.stdout + r.stderr)
    assert {k: jobs.get(k, 0) for k in expected} == expected
    cfg = load_config("config.yaml")
    cohorts = cohort_plan(cfg)
    # cohorts of the figure's own victims train (cohort_by_figure) and no other: no victim of another figure is linked
    own = {v for v, figures in trained_victims(cfg).items() if figure in figures}
    assert jobs.get("train_cohort", 0) == jobs.get("evaluate_cohort", 0) == len({cohorts[v] for v in own})
    assert jobs.get("link_victim", 0) == len(own) >= len(figure_victims(cfg, figure))


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
     "invalid config: config key 'recipes.digits_cnn.model': unknown model 'vgg99' (known: airbench, "),
    (lambda c: c["datasets"].update(broken={"source": "imagenet"}),
     "invalid config: config key 'datasets.broken.source': 'imagenet' does not match"),
    (lambda c: c["perturbations"]["pgd_l2_80"].update(norm="l3"),
     "invalid config: config key 'perturbations.pgd_l2_80.norm': 'l3' is not one of"),
    (lambda c: c["attacks"]["l2_80"].update(perturbation="pgd_l2_81"),
     "invalid config: config key 'attacks.l2_80.perturbation': unknown perturbation 'pgd_l2_81'"),
    (lambda c: c["perturbations"]["pgd_l2_80"].update(random_start=True),  # poisons keep the thesis's start at x
     "invalid config: config key 'perturbations.pgd_l2_80': Additional properties are not allowed ('random_start'"),
    (lambda c: c["claims"]["thesis-3-8-adversarial-beats-baseline"]["above"].update(figure="fig9-9"),
     "invalid config: config key 'claims.thesis-3-8-adversarial-beats-baseline.above.figure': unknown figure 'fig9-9'"),
    (lambda c: c["claims"]["thesis-5-1-noise-cuts-asr"]["measured"].update(series="noise 7"),
     "invalid config: config key 'claims.thesis-5-1-noise-cuts-asr.measured.series': figure 'fig5-1' has no series "
     "'noise 7'"),
    (lambda c: c["claims"]["thesis-3-7-gan-beats-baseline"]["measured"].update(figure="fig1-2"),
     "config key 'claims.thesis-3-7-gan-beats-baseline.measured.figure': figure 'fig1-2' is a 'examples' figure"),
    (lambda c: c["defences"]["dp_0"].update(microbatches=15),
     "invalid config: config key 'defences.dp_0.microbatches': 15 does not divide lot_size 256"),
])
def test_bad_config_fails_with_one_line_naming_the_key(tmp_path, edit, message):
    cfg = raw_config("config/demo.yaml")
    edit(cfg)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = snakemake(tmp_path, "--configfile", str(tmp_path / "bad.yaml"), "-n")
    assert r.returncode != 0 and message in r.stdout + r.stderr


def test_config_overrides_apply_to_the_default_config_and_to_presets(tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path)
    r = snakemake(tmp_path, "-n", "--config", "train_threads=3", "--cores", "8", "results/figures/fig3-8.png")
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"rule train_cohort:.*?threads: 3", r.stdout, re.S)
    r = snakemake(tmp_path, "-n", "--configfile", str(ROOT / "config/demo.yaml"), "--config", "train_threads=2",
                  "--cores", "8", "results/demo/figures/fig3-8.png")
    assert r.returncode == 0 and "fig3-8" in r.stdout and "cifar10" not in r.stdout  # the preset replaced config.yaml
    assert re.search(r"rule train_cohort:.*?threads: 2", r.stdout, re.S)


def test_a_config_file_that_is_not_yaml_is_named_with_its_line(tmp_path):
    (tmp_path / "config.yaml").write_text("datasets:\n  digits: {source: digits}\ntriggers: [a\nattacks: {}\n")
    r = snakemake(tmp_path, "-n")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "invalid config: config.yaml, line 4, column 8: not valid YAML (expected ',' or ']', but got ':')")


def test_a_broken_config_stops_with_exactly_one_line(tmp_path):
    cfg = raw_config("config/demo.yaml")
    cfg["figures"]["fig3-2"]["targets"] = [0, 0]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = snakemake(tmp_path, "--configfile", str(tmp_path / "bad.yaml"), "-n")
    lines = [line for line in r.stderr.splitlines() if not line.startswith("Using workflow specific profile")]
    assert r.returncode == 1 and r.stdout == "" and len(lines) == 1
    assert lines[0].startswith("invalid config: config key 'figures.fig3-2.targets': [0, 0] has non-unique elements")


def test_a_changed_dataset_file_whose_preparation_fails_never_counts_as_up_to_date(tmp_path):
    import numpy as np

    def archive(test_side):
        rng = np.random.default_rng(test_side)
        np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8),
                 y_train=np.arange(40) % 4, y_test=np.arange(8) % 4,
                 x_test=rng.integers(0, 256, (8, test_side, 8, 1), dtype=np.uint8))

    archive(8)
    cfg = raw_config("config/demo.yaml")
    cfg["datasets"]["d"] = {"source": f"npz:{tmp_path / 'd.npz'}"}
    cfg["figures"] = {"ex": {"kind": "examples", "title": "x", "dataset": "d", "classes": [0], "columns": {"a": {}}}}
    cfg["claims"] = {}                                           # its claims read figures dropped here
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert snakemake(tmp_path, "--configfile", str(tmp_path / "c.yaml"), "--cores", "1").returncode == 0
    archive(7)                                                   # the file changes and no longer prepares
    for _ in range(2):                                           # the failed rerun, then the next run
        r = snakemake(tmp_path, "--configfile", str(tmp_path / "c.yaml"), "--cores", "1")
        assert r.returncode != 0 and "Nothing to be done" not in r.stdout + r.stderr
        assert "x_train images (8, 8, 1) differ from x_test (7, 8, 1)" in r.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo pipeline, run once end to end into a fresh checkout-like folder (in a folder of its own, so a test
    can put ../shared beside it)."""
    work = tmp_path_factory.mktemp("demo") / "checkout"
    work.mkdir()
    r = snakemake(work, "--configfile", str(ROOT / "config/demo.yaml"), "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


@pytest.mark.slow
def test_demo_draws_every_figure_from_real_training(demo):
    for fig in load_config("config/demo.yaml")["figures"]:
        assert (demo / "results/demo/figures" / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig
    gu = pd.read_csv(demo / "results/demo/tables/fig2-1.csv")
    lc = pd.read_csv(demo / "results/demo/tables/fig3-2.csv")
    assert len(gu) == 6 and len(lc) == 4 and gu["clean_accuracy"].min() > 0.95
    assert gu[gu["count"] == 34]["asr_labelled"].mean() >= 0.9
    assert ((lc["fraction_of_class"] - lc["rate"]).abs() < 0.005).all()  # count = round(rate x class size)
    every = pd.read_csv(demo / "results/demo/tables/all_victims.csv")
    assert set(every["method"]) == {"badnets", "label_consistent", "input_aware", "none"}
    assert every[every["defence"] == "none"]["clean_accuracy"].min() > 0.85


@pytest.mark.slow
def test_demo_scores_every_claim_of_its_preset(demo):
    card = pd.read_csv(demo / "results/demo/tables/scorecard.csv")
    assert card["claim"].tolist() == list(load_config("config/demo.yaml")["claims"])
    assert card["measured"].notna().all() and set(card["verdict"]) <= {"holds", "fails", "inconclusive"}
    assert (card["statistic_low"] <= card["statistic"] + 1e-9).all()
    assert (card["statistic"] <= card["statistic_high"] + 1e-9).all()
    md = (demo / "results/demo/tables/scorecard.md").read_text()
    n = card["verdict"].value_counts()
    assert f"{n.get('holds', 0)} hold, {n.get('fails', 0)} fail, {n.get('inconclusive', 0)} inconclusive" in md
    assert md.count("\n| ") == len(card) + 2
    assert (demo / "results/demo/figures/scorecard.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_demo_surrogates_record_clean_and_robust_accuracy(demo):
    metrics = {s: json.loads((demo / f"results/demo/surrogates/{s}/metrics.json").read_text())
               for s in ("adversarial", "standard", "blackbox", "trusted")}
    assert all(m["clean_accuracy"] > 0.8 for m in metrics.values())
    assert metrics["adversarial"]["robust_accuracy"] > metrics["standard"]["robust_accuracy"]
    assert metrics["trusted"]["train_images"] == 256 and metrics["blackbox"]["train_images"] == 450


@pytest.mark.slow
def test_demo_filter_ranks_dirty_label_poisons_lowest(demo):
    import numpy as np

    found = {}
    for attack in ("gu", "l2_80"):
        z = np.load(demo / f"results/demo/filtering/digits/trusted/{attack}/t0-n10-s0.npz")
        found[attack] = int(z["poisoned"][np.argsort(z["probability"])[:100]].sum())
    assert found["gu"] >= 8 and found["gu"] > found["l2_80"]


@pytest.mark.slow
def test_demo_traces_losses_of_poisoned_and_untriggered_samples(demo):
    log = json.loads((demo / "results/demo/victims/digits/l2_80/digits_cnn_traced/none/t0-p0.25-s0/train_log.json")
                     .read_text())
    assert len(log["loss_trace"]) == 18
    last = log["loss_trace"][-1]
    assert set(last) == {"step", "poisoned", "poisoned_without_trigger", "all"}
    assert last["poisoned"]["median"] < last["poisoned_without_trigger"]["median"]


@pytest.mark.slow
def test_demo_runs_every_defence_and_reports_what_each_measured(demo):
    grid = pd.read_csv(demo / "results/demo/tables/defence-grid.csv")
    assert len(grid) == 30 and set(grid["defence"]) == {"none", "adv", "dp_1", "abl", "spectral", "clustering"}
    assert grid[grid["defence"] != "none"]["der"].between(0, 1).all()  # each against its undefended twin
    assert grid[grid["defence"] == "none"]["der"].isna().all()
    at = pd.read_csv(demo / "results/demo/tables/seed001-adversarial-training.csv")
    clean = at[at["series"] == "clean model"]  # the clean victims: accuracy, no attack rates
    assert len(clean) == 2 and clean["asr_labelled"].isna().all() and (clean["asr_labelled_n"] == 0).all()
    assert clean.set_index("defence").loc["none", "clean_accuracy"] > 0.9
    dp = grid[grid["defence"] == "dp_1"]
    assert (dp["epsilon"] > 0).all() and dp["epsilon"].nunique() == 1  # same lots and steps, same budget
    abl = grid[grid["defence"] == "abl"]  # precision and recall count the same isolated poisons
    hits = abl["isolation_precision"] * abl["isolated"]  # a whole number of poisons, counted twice
    assert ((hits - hits.round()).abs() < 1e-3).all()
    assert (hits.round() == (abl["isolation_recall"] * abl["count"]).round()).all()
    assert grid[grid["defence"] == "spectral"]["flagged"].notna().all()
    badnets = grid[grid["series"] == "BadNets"].set_index("defence")["asr_labelled"]
    assert badnets["none"] > 0.9 and badnets["dp_1"] < 0.5  # DP-SGD defeats the demo's BadNets
    assert (demo / "results/demo/tables/seed003-abl.md").read_text().startswith("# Anti-Backdoor Learning")
    attacker = json.loads((demo / "results/demo/dynamic/digits/dynamic/t0-s0/metrics.json").read_text())
    assert attacker["asr_labelled"] > 0.5 and attacker["clean_accuracy"] > 0.9  # the attacker-trained classifier
    abl = pd.read_csv(demo / "results/demo/tables/seed003-abl.csv")
    own = abl[abl["series"] == "input-aware"]   # is the seed's input-aware row, undefended only
    assert own["defence"].tolist() == ["none"] and own["asr_labelled_n"].item() == attacker["asr_labelled_n"]
    assert own["asr_labelled"].item() == pytest.approx(attacker["asr_labelled"], abs=1e-6)  # the table's 6 digits
    assert own["test_loss_se"].item() > 0
    assert set(abl[abl["series"] == "input-aware, CNN on its fixed poisons"]["defence"]) == {"none", "abl"}
    dynamic = grid[grid["series"] == "input-aware"].set_index("defence")
    assert (dynamic["trigger"] == "input_aware").all() and dynamic["amplitude"].isna().all()
    assert dynamic.loc["none", "asr_labelled"] > 0.5  # a victim trained on the saved poisoned set learns it too
    lines = pd.read_csv(demo / "results/demo/tables/fig5-1.csv")
    assert set(lines["defence"]) == {"sgd_frozen", "dp_0", "dp_033", "dp_067", "dp_1"} and len(lines) == 15
    assert (demo / "results/demo/figures/seed001-tsne.png").stat().st_size > 10_000


@pytest.mark.slow
def test_report_shows_every_figure_with_its_caption_filed_by_chapter(demo, tmp_path):
    r = snakemake(demo, "--configfile", str(ROOT / "config/demo.yaml"), "--report", str(tmp_path / "report.html"))
    assert r.returncode == 0, r.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    figures = load_config("config/demo.yaml")["figures"]
    for name, spec in figures.items():
        assert f"results/demo/figures/{name}.png" in html and spec["section"] in html, name
    assert html.count("Filed under <em>") == len(figures)  # one rendered caption per figure
    assert "results/demo/tables/fig3-8.csv" in html and "results/demo/tables/all_victims.csv" in html


@pytest.mark.slow
def test_second_run_does_nothing(demo):
    r = snakemake(demo, "--configfile", str(ROOT / "config/demo.yaml"), "--cores", "2")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file below a folder, .snakemake's bookkeeping aside, by relative path: its sha256 and mtime (ns)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and ".snakemake" not in p.relative_to(folder).parts}


@pytest.mark.slow
def test_a_second_config_in_the_same_checkout_leaves_every_file_of_the_demo_as_it_was(demo, tmp_path):
    second = tmp_path / "second.yaml"  # built on the demo: it must not inherit the demo's folder
    second.write_text("include: [config/demo.yaml]\ntrain_threads: 1\n")
    before = snapshot(demo)
    r = snakemake(demo, "--configfile", str(second), "--cores", "2",  # seconds of work
                  "results/second/data/digits.npz", "results/second/surrogates/standard/model.pt")
    assert r.returncode == 0, r.stderr[-3000:]
    after = snapshot(demo)
    assert {f: after.get(f) for f in before} == before  # byte for byte, not even rewritten
    new = set(after) - set(before)
    assert all(f.startswith("results/second/") for f in new), sorted(new)
    assert {"results/second/data/digits.npz", "results/second/surrogates/standard/model.pt",
            "results/second/logs/train_surrogate/standard.log",
            "results/second/benchmarks/train_surrogate/standard.tsv"} <= new
    assert r.stdout.splitlines()[-1] == (f"Every figure with its caption in one HTML page: snakemake --configfile "
                                         f"{second} --report results/second/report.html")


def test_every_artifact_log_and_benchmark_lies_below_the_config_s_results_folder():
    demo_config = load_config("config/demo.yaml")
    try:
        layout.use_results(demo_config["results"])
        assert all(getattr(layout, name).startswith("results/demo/") for name in layout.PATTERNS)
        assert layout.log("train_cohort", layout.COHORT) == (
            "results/demo/logs/train_cohort/{dataset}/{recipe}/{defence}/s{seed}-{digest}.log")
        assert layout.benchmark("prepare_data", layout.DATA) == "results/demo/benchmarks/prepare_data/{dataset}.tsv"
        victim = Victim("digits", "gu", "cnn", "none", 0, "p0.25", 0)
        assert str(victim.path) == "results/demo/victims/digits/gu/cnn/none/t0-p0.25-s0"
        assert all(str(c.path).startswith("results/demo/cohorts/") for c in cohort_plan(demo_config).values())
    finally:
        layout.use_results("results")
    assert layout.FIGURE == "results/figures/{figure}.png"


@pytest.mark.parametrize("folder", ["/etc", "../x", "results/../x", "results/.hidden", "results/", "a b", "a\nb"])
def test_a_results_folder_outside_the_working_directory_or_oddly_named_is_refused_by_its_key(folder):
    cfg = raw_config("config/demo.yaml")
    cfg["results"] = folder
    with pytest.raises(WorkflowError) as e:
        load_config_dict(cfg)
    line = schema_error_line(e.value.__context__)
    assert line.startswith(f"config key 'results': {folder!r} does not match") and "\n" not in line


def cohorts_with(cfg, victims=None):
    """The cohorts of a config (all, or those holding any of the given victims)."""
    return {c for v, c in cohort_plan(cfg).items() if victims is None or v in victims}


def gu_a32_victims(cfg):
    """The victims whose attack uses the gu_a32 trigger."""
    return {v for v in trained_victims(cfg) if cfg["attacks"][v.attack].get("trigger") == "gu_a32"}


@pytest.mark.slow
@pytest.mark.parametrize("edit, reruns, kept, retrained", [
    # a new rate reuses the perturbed class: only the new poison sets, and the cohorts the new victims land in
    (lambda c: c["figures"]["fig3-8"].update(rates=[0.25, 0.5, 1.0]), {"poison_dataset": 2},
     {"perturb_classes", "train_surrogate"}, lambda old, new: cohorts_with(new) - cohorts_with(old)),
    (lambda c: c["gans"]["wgan"].update(encode_steps=200), {"encode_class": 3}, {"train_gan", "train_surrogate"},
     None),
    # 4 poison sets (2 targets x 2 rates) feed 8 victims (with and without augmentation): their cohorts retrain
    (lambda c: c["triggers"]["gu_a32"].update(amplitude=48), {"poison_dataset": 4},
     {"perturb_classes", "perturb_class", "prepare_data"}, lambda old, new: cohorts_with(new, gu_a32_victims(new))),
    (lambda c: c["figures"]["fig3-2"].update(title="renamed"), {"plot_heatmap": 1},
     {"train_cohort", "aggregate_metrics"}, None),
])
def test_touching_one_parameter_reruns_only_what_depends_on_it(demo, tmp_path, edit, reruns, kept, retrained):
    old = raw_config("config/demo.yaml")
    cfg = raw_config("config/demo.yaml")
    edit(cfg)
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = snakemake(demo, "--configfile", str(tmp_path / "edited.yaml"), "-n")
    jobs = job_counts(r.stdout + r.stderr)
    assert {k: jobs.get(k) for k in reruns} == reruns and not kept & set(jobs)
    if retrained:
        cohorts = retrained(load_config_dict(old), load_config_dict(cfg))
        # those cohorts, and the sanitisers' cohorts that read a retrained undefended victim
        assert 0 < len(cohorts) <= jobs["train_cohort"] == jobs["evaluate_cohort"] < len(cohorts_with(old)) / 2
        assert jobs["link_victim"] >= sum(len(c.members) for c in cohorts)


def test_a_broken_dataset_archive_fails_its_job_with_one_line_naming_the_array(tmp_path):
    import numpy as np

    np.savez(tmp_path / "broken.npz", x_train=np.zeros((4, 8, 8, 1), np.float32), y_train=np.arange(4),
             x_test=np.zeros((2, 8, 8, 1), np.uint8), y_test=np.arange(2))
    cfg = raw_config("config/demo.yaml")
    cfg["datasets"]["broken"] = {"source": f"npz:{tmp_path / 'broken.npz'}"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = snakemake(tmp_path, "--configfile", str(tmp_path / "c.yaml"), "--cores", "1", "results/demo/data/broken.npz")
    assert r.returncode != 0
    error = [line for line in r.stderr.splitlines() if line.startswith("error: ArtifactError: ")]
    assert error and "array 'x_train' has dtype float32" in error[-1]
    assert error[-1] in r.stderr.splitlines()[-8:]  # the last thing before Snakemake's closing lines
    assert not (tmp_path / "results/demo/data/broken.npz").exists()


@pytest.mark.slow
# the demo has 136 victims in 21 cohorts
@pytest.mark.parametrize("module, reruns, kept", [
    ("evaluate", {"evaluate_cohort": 21, "evaluate_attacker": 1, "link_victim": 136},
     {"train_cohort", "train_input_aware", "poison_dataset", "train_surrogate"}),
    ("defences/__init__", {"train_cohort": 21, "link_victim": 136}, {"poison_dataset", "train_surrogate", "prepare_data"}),
    ("defences/abl", {"train_cohort": 1}, {"poison_dataset", "train_surrogate", "prepare_data"}),  # one method's module
    ("stacking", {"train_cohort": 21}, {"poison_dataset", "train_surrogate", "prepare_data"}),
    ("gan", {"train_gan": 3, "encode_class": 3}, {"train_surrogate", "prepare_data"}),
    ("galleries", {"plot_examples": 9, "plot_filtered_examples": 1}, {"plot_heatmap", "train_cohort"}),
])
def test_editing_library_code_reruns_the_stages_that_run_it(demo, tmp_path, module, reruns, kept):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "workflow", copy / "workflow")
    shutil.copytree(ROOT / "config", copy / "config")  # the layers the demo includes, relative to the Snakefile
    shutil.copy(ROOT / "Snakefile", copy)
    with open(copy / f"src/pipeline_lib/{module}.py", "a") as f:
        f.write("\n# an edit\n")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(copy / "Snakefile"), "--directory", str(demo),
                        "--configfile", str(ROOT / "config/demo.yaml"), "-n"], capture_output=True, text=True)
    jobs = job_counts(r.stdout + r.stderr)
    assert {k: jobs.get(k) for k in reruns} == reruns and not kept & set(jobs)
