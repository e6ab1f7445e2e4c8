"""Hostile and broken inputs (config values, YAML, npz headers, tampered artifacts, lock folders, full disks) are
refused with one line naming the key or file, before any work is spent, and nothing is written or reported."""
import errno
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, raw_config
from pipeline_lib import devices
from pipeline_lib.artifacts import ArtifactError, DivergedError, atomic_path, load_json, load_npz, save_json
from pipeline_lib.config import load_yaml
from pipeline_lib.data import MAX_IMAGES, describe, load_planned, load_source
from pipeline_lib.gan import Generator, load_generator, save_generator
from pipeline_lib.models import NonFiniteOutputs, build, load_model, save_weights
from pipeline_lib.runlog import job_log
from pipeline_lib.trigger_nets import DynamicTrigger

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
ARCH = {"name": "small_cnn", "in_channels": 1, "num_classes": 10}


def demo_config() -> dict:
    return raw_config("config/demo.yaml")


def plan(tmp_path, text: str | bytes, as_preset: bool = True) -> list[str]:
    """Dry-run a config (as --configfile, or as the workdir's config.yaml); its stderr lines, without Snakemake's
    profile notice. Asserts it failed and wrote nothing."""
    path = tmp_path / ("preset.yaml" if as_preset else "config.yaml")
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    args = ["--configfile", str(path)] if as_preset else []
    r = subprocess.run([*SNAKEMAKE, "--directory", str(tmp_path), *args, "-n"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert not (tmp_path / "results").exists()
    return [line for line in r.stderr.splitlines() if not line.startswith("Using workflow specific profile")]


def edited(edit) -> str:
    cfg = demo_config()
    edit(cfg)
    return yaml.safe_dump(cfg, sort_keys=False)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["recipes"]["digits_cnn"].update(lr=float("nan")), "'recipes.digits_cnn.lr': nan is not a finite"),
    (lambda c: c["recipes"]["digits_cnn"].update(lr=float("inf")), "'recipes.digits_cnn.lr': inf is not a finite"),
    (lambda c: c["recipes"]["digits_cnn"].update(weight_decay=float("inf")), "'recipes.digits_cnn.weight_decay': inf"),
    (lambda c: c["recipes"]["digits_cnn"].update(gamma=float("nan")), "'recipes.digits_cnn.gamma': nan"),
    (lambda c: c["recipes"]["digits_cnn"].update(epochs=float("inf")), "'recipes.digits_cnn.epochs': inf"),
    (lambda c: c["defences"]["dp_1"].update(noise_multiplier=float("inf")), "'defences.dp_1.noise_multiplier': inf"),
    (lambda c: c["figures"]["fig3-2"].update(seeds=[2 ** 64]), "'figures.fig3-2.seeds.0': 18446744073709551616 is "
                                                              "greater than the maximum of 4294967295"),
    (lambda c: c["recipes"]["digits_cnn"]["model_options"].update(width=10 ** 6),
     "'recipes.digits_cnn.model_options.width': 1000000 is greater than the maximum of 4096"),
    (lambda c: c["figures"].update({"abc\n": c["figures"]["fig3-2"]}), "'figures': 'abc\\n' does not match"),
    (lambda c: c["triggers"].update({"t" * 300: {"pattern": "bottom_right"}}), "'triggers': 'tttttttt"),
    (lambda c: c["defences"]["spectral"].update(eps=1e6), "'defences.spectral.eps': 1000000.0 would flag"),
    (lambda c: c["figures"]["fig3-2"].update(rates=[1e-9]), "'figures.fig3-2.rates': 1e-09 poisons 0 of the"),
    (lambda c: c["figures"]["fig2-1"].update(counts=[10 ** 6]),
     "'figures.fig2-1.counts': 1000000 poisons 1000000 of the 1347"),
])
def test_a_bad_config_value_is_refused_by_key_at_planning(tmp_path, edit, message):
    lines = plan(tmp_path, edited(edit))
    assert len(lines) == 1 and lines[0].startswith("invalid config: config key ") and message in lines[0], lines


def test_a_duplicate_key_is_refused_with_its_line_instead_of_keeping_the_last(tmp_path):
    text = (ROOT / "config/demo.yaml").read_text()
    lines = plan(tmp_path, text + "figures:\n  only: {title: x}\n")
    first = 1 + text.splitlines().index("figures:")
    assert lines == [f"invalid config: {tmp_path}/preset.yaml, line {len(text.splitlines()) + 1}: key 'figures' "
                     f"given twice in one block (first on line {first}; YAML would silently keep the last)"]


@pytest.mark.parametrize("tail, message", [
    ("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7)), "expands to more than 200000"),
    ("loop: &loop [*loop]\n", "a recursive alias, refused"),
])
def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path, tail, message):
    lines = plan(tmp_path, (ROOT / "config/demo.yaml").read_text() + tail)
    assert len(lines) == 1 and message in lines[0] and "preset.yaml, line" in lines[0]


@pytest.mark.parametrize("raw, message", [
    ("recipes: {a: 1}\n".encode() + b"title: \"caf\xe9\"\n", "config.yaml, line 2: not UTF-8 (byte 0xe9)"),
    (b"datasets: {}\ntitle: a\x00b\n", "config.yaml, line 2: holds a NUL byte"),
    (b"datasets:\n\tdigits: 1\n", "config.yaml, line 2, column 1: not valid YAML"),
])
def test_an_unreadable_config_yaml_is_named_with_its_line(tmp_path, raw, message):
    lines = plan(tmp_path, raw, as_preset=False)
    assert len(lines) == 1 and lines[0].startswith(f"invalid config: {message}"), lines


def test_every_shipped_config_file_loads_strictly_as_yaml_reads_it():
    for path in [ROOT / "config.yaml", *sorted((ROOT / "config").rglob("*.yaml"))]:  # presets and their layers
        assert load_yaml(path) == yaml.safe_load(path.read_text()), path


# --------------------------------------------------------------------------- npz archives


def write_npz(path, members: dict[str, tuple[tuple[int, ...], str]], data: dict[str, np.ndarray] | None = None):
    """An npz whose members carry the given (shape, dtype) headers; the data is real where given, else empty, so
    the header can promise far more than the file holds."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, (shape, dtype) in members.items():
            with zf.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                         "shape": shape})
                if data and name in data:
                    f.write(np.ascontiguousarray(data[name], dtype=dtype).tobytes())
    return path


def good_members(n=20):
    return {"x_train": ((n, 8, 8, 1), "u1"), "y_train": ((n,), "i8"), "x_test": ((4, 8, 8, 1), "u1"),
            "y_test": ((4,), "i8")}


@pytest.mark.parametrize("change, message", [
    ({"y_train": ((5 * 10 ** 8,), "i8"), "x_train": ((5 * 10 ** 8, 8, 8, 1), "u1")}, f"more than the {MAX_IMAGES}"),
    ({"y_train": ((19,), "i8")}, "y_train has shape (19,), expected (20,)"),
    ({"classes": ((2 ** 40,), "<U8")}, "array 'classes' has shape (1099511627776,)"),
    ({"x_train": ((20, 8, 10 ** 6, 1), "u1")}, "sides of at most 1024"),
    ({"y_train": ((20,), "f4")}, "array 'y_train' has dtype float32"),
    ({"y_train": ((20,), "|O")}, "array 'y_train' has dtype object"),
])
def test_npz_headers_are_checked_before_anything_is_decompressed(tmp_path, change, message):
    path = write_npz(tmp_path / "d.npz", {**good_members(), **change})  # headers only: no data behind them
    for read in (lambda: describe(f"npz:{path}"), lambda: load_source(f"npz:{path}", tmp_path)):
        with pytest.raises(ArtifactError, match="^" + str(path)) as e:
            read()
        assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("label", [2 ** 40, 3 * 10 ** 7])
def test_a_huge_label_never_becomes_a_class_list(tmp_path, label):
    y = np.arange(20) % 3
    y[0] = label
    path = write_npz(tmp_path / "d.npz", good_members(), {"y_train": y, "y_test": np.arange(4) % 3,
                                                         "x_train": np.zeros((20, 8, 8, 1)), "x_test": np.zeros(
                                                             (4, 8, 8, 1))})
    with pytest.raises(ArtifactError, match=f"label {label} implies more than 100000 classes"):
        describe(f"npz:{path}")


def test_files_that_are_not_archives_are_named_for_what_they_are(tmp_path):
    (tmp_path / "text.npz").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "dir.npz").mkdir()
    os.mkfifo(tmp_path / "fifo.npz")
    os.symlink(tmp_path / "loop_b.npz", tmp_path / "loop_a.npz")
    os.symlink(tmp_path / "loop_a.npz", tmp_path / "loop_b.npz")
    os.symlink(tmp_path / "gone.npz", tmp_path / "dangling.npz")
    np.savez(tmp_path / "whole.npz", a=np.arange(10 ** 5))
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:-1000])
    expected = {"text": "not an npz archive (no zip signature)", "dir": "is a directory",
                "fifo": "is not a regular file", "loop_a": "cannot be read (Too many levels of symbolic links)",
                "dangling": "a symbolic link to a missing file", "truncated": "not a readable npz archive",
                "missing": "file not found"}
    for name, message in expected.items():
        with pytest.raises(ArtifactError) as e:
            load_npz(tmp_path / f"{name}.npz")
        assert str(e.value).startswith(f"{tmp_path}/{name}.npz: {message}"), str(e.value)


def test_an_archive_swapped_after_planning_is_refused_when_prepared(tmp_path):
    from pipeline_lib.data import file_sha256

    a = {"x_train": np.zeros((4, 8, 8, 1), np.uint8), "y_train": np.arange(4), "x_test": np.zeros((2, 8, 8, 1),
                                                                                                   np.uint8),
         "y_test": np.arange(2)}
    np.savez(tmp_path / "d.npz", **a)
    planned = file_sha256(tmp_path / "d.npz")
    assert len(load_planned(f"npz:{tmp_path}/d.npz", tmp_path, planned).y_train) == 4
    np.savez(tmp_path / "d.npz", **{**a, "y_train": np.arange(4)[::-1]})
    with pytest.raises(ArtifactError, match="d.npz: changed since the workflow was planned"):
        load_planned(f"npz:{tmp_path}/d.npz", tmp_path, planned)


# --------------------------------------------------------------------------- model files


class Payload:
    """Unpickling this runs code: it must never happen."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def tampered_model_files(tmp_path):
    model = build(ARCH)
    state = model.state_dict()
    good = tmp_path / "good.pt"
    save_weights(good, ARCH, model)
    files = {"pickle": {"arch": ARCH, "state_dict": Payload(tmp_path / "pwned")}, "list": [1, 2, 3],
             "shapes": {"arch": ARCH, "state_dict": {**state, "classifier.weight": torch.zeros(3, 3)}},
             "huge_spec": {"arch": {**ARCH, "width": 10 ** 6}, "state_dict": state},
             "not_tensors": {"arch": ARCH, "state_dict": {k: 1.0 for k in state}},
             "no_arch": {"state_dict": state}}
    for name, blob in files.items():
        with open(tmp_path / f"{name}.pt", "wb") as f:
            pickle.dump(blob, f, protocol=2) if name == "pickle" else torch.save(blob, f)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:300])
    return [*files, "truncated"]


def test_a_tampered_model_file_is_refused_in_one_line_naming_it_and_never_unpickled(tmp_path):
    for name in tampered_model_files(tmp_path):
        with pytest.raises(ArtifactError) as e:
            load_model(tmp_path / f"{name}.pt")
        text = str(e.value)
        assert text.startswith(f"{tmp_path}/{name}.pt: ") and "\n" not in text and "weights_only=False" not in text
    assert not (tmp_path / "pwned").exists()


def test_tampered_generator_and_trigger_files_are_refused_by_name(tmp_path):
    g = Generator((1, 8, 8), 4, 2)
    save_generator(tmp_path / "g.pt", g)
    blob = torch.load(tmp_path / "g.pt", weights_only=True)
    blob["spec"]["width"] = 10 ** 6
    torch.save(blob, tmp_path / "g.pt")
    with pytest.raises(ArtifactError, match="g.pt: does not hold what this pipeline writes there"):
        load_generator(tmp_path / "g.pt")
    torch.save({"channels": 1, "width": 4, "levels": 2, "generator": {}, "mask": {}}, tmp_path / "t.pt")
    with pytest.raises(ArtifactError, match="t.pt: does not hold what this pipeline writes there"):
        DynamicTrigger.load(str(tmp_path / "t.pt"))


def test_weights_with_a_nan_are_never_saved(tmp_path):
    model = build(ARCH)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(DivergedError, match="tensor 'state_dict.classifier.weight' holds NaN"):
        save_weights(tmp_path / "m.pt", ARCH, model)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- locks, disks, logs


def test_gpu_locks_refuse_a_shared_folder_and_never_follow_links(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(devices.LockError, match="mode 777; it must be yours and closed to others"):
        with devices.lease_gpu(["GPU-a"], shared):
            pass
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (private / "gpu-GPU-a.0.lock").symlink_to(victim)
    with pytest.raises(devices.LockError, match="gpu-GPU-a.0.lock: cannot open the GPU lock"):
        with devices.lease_gpu(["GPU-a"], private):
            pass
    assert victim.read_text() == "keep me"


def test_a_held_gpu_lock_times_out_naming_its_holder(tmp_path):
    with devices.lease_gpu(["GPU-a"], tmp_path):
        with pytest.raises(devices.LockError, match=f"gpu-GPU-a.0.lock: pid {os.getpid()} on "):
            with devices.lease_gpu(["GPU-a"], tmp_path, poll_seconds=0.01, timeout=0.05):
                pass


def test_artifacts_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    save_json(tmp_path / "m.json", {"a": 1})
    assert events == [("fsync", f"{tmp_path}/.m.json.tmp"), ("replace", f"{tmp_path}/m.json"),
                      ("fsync", str(tmp_path))]


def test_a_full_disk_names_the_artifact_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError) as e, atomic_path(tmp_path / "m.json") as tmp:
        tmp.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.filename == str(tmp_path / "m.json") and list(tmp_path.iterdir()) == []


def test_a_job_whose_log_cannot_be_written_says_so_on_stderr(tmp_path, capsys):
    log = tmp_path / "full.log"
    log.symlink_to("/dev/full")  # a log on a full disk
    with pytest.raises(SystemExit):
        with job_log(log):
            raise ValueError("line one\nline two")
    assert capsys.readouterr().err.splitlines() == [
        f"error: ValueError: line one line two (the log {log} could not be written: No space left on device)"]
    with pytest.raises(SystemExit):
        with job_log(log):
            print("training: 1/10 steps")  # the log fills the disk first: the error names it
    assert capsys.readouterr().err.splitlines() == [
        f"error: OSError: [Errno 28] No space left on device: '{log}' (the log {log} could not be written: "
        "No space left on device)"]


def test_a_job_still_running_from_a_killed_snakemake_is_never_run_twice(tmp_path):
    log = tmp_path / "train.log"
    rerun = [sys.executable, "-c", "import sys; from pipeline_lib.runlog import job_log\n"
             "with job_log(sys.argv[1]): print('rerun')", str(log)]
    with job_log(log):  # the job a killed Snakemake left running
        print("training: 1/10 steps")
        r = subprocess.run(rerun, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert log.read_text() == "training: 1/10 steps\n"  # its log untouched
    [line] = r.stderr.splitlines()
    assert r.returncode == 1 and line.startswith(f"error: JobLockError: {log}: this job is still running (pid "
                                                 f"{os.getpid()} on ")
    assert line.endswith("left running by a killed Snakemake, which has removed its outputs; kill that process, "
                         "then rerun")
    assert subprocess.run(rerun, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).returncode == 0  # lock released
    assert log.read_text() == "rerun\n"


def test_a_copied_link_is_renamed_into_place_whole(tmp_path):
    src = tmp_path / "src.pt"
    src.write_bytes(b"x" * 10000)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "ln").write_text("#!/bin/sh\nexit 1\n")  # a hard link across file systems fails
    (fake_bin / "ln").chmod(0o755)
    common = (ROOT / "workflow/rules/common.smk").read_text()  # link_shell is plain Python: run its command
    namespace = {}
    exec(common[common.index("def link_shell"):common.index("def perturbations_where")], namespace)
    command = namespace["link_shell"]((str(src), str(tmp_path / "dst.pt"))).replace("{log:q}", str(tmp_path / "log"))
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", command], check=True, env=env)
    assert (tmp_path / "dst.pt").read_bytes() == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "dst.pt", "log", "src.pt"]


@pytest.mark.parametrize("stacked", [False, True])
def test_a_training_that_diverges_stops_with_one_line_and_returns_no_model(stacked):
    from pipeline_lib.poisons import PoisonSet
    from pipeline_lib.stacking import train_stacked
    from pipeline_lib.train import Recipe, train

    ds = load_source("digits", "unused")
    x, y = ds.x_train[:256], ds.y_train[:256]
    recipe = Recipe(model="small_cnn", epochs=2, batch_size=32, lr=1e30)
    empty = PoisonSet(np.empty(0, np.int64), x[:0], y[:0], x[:0])
    with pytest.raises(DivergedError, match=r"^training diverged: the mean loss (of member 0, 1 )?in epoch 1 is nan"):
        if stacked:
            train_stacked(x, y, [empty, empty], 10, recipe, 0, torch.device("cpu"))
        else:
            train(x, y, 10, recipe, 0, torch.device("cpu"))


def test_titles_and_class_names_with_math_markup_are_drawn_as_written(tmp_path):
    from pipeline_lib.plots import filtering_curve, loss_trace

    scores = {"probability": np.linspace(0, 1, 50), "poisoned": np.arange(50) < 5}
    filtering_curve([scores], [r"series $\bad$"], r"title $\frac{1}{$", tmp_path / "f.png")
    point = {"step": 1, **{g: {"q25": 0.1, "median": 0.2, "q75": 0.3}
                           for g in ("poisoned", "poisoned_without_trigger", "all")}}
    log = {"loss_trace": [point, {**point, "step": 2}], "poison": {"target": 0, "count": 5}}
    loss_trace([log], {0: r"class $\undefined{$"}, r"$\bad$", tmp_path / "l.png")
    assert (tmp_path / "f.png").stat().st_size > 1000 and (tmp_path / "l.png").stat().st_size > 1000


# --------------------------------------------------------------------------- models whose outputs are not finite


def blown_up(model):
    """Finite weights whose outputs overflow: every weight times 1e30."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e30)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    return model


@pytest.fixture
def digits_victim(tmp_path):
    """A prepared 200-image digits set, one victim's model file and training log, as the workflow writes them."""
    import dataclasses

    from pipeline_lib.data import save_prepared

    ds = load_source("digits", "unused")
    save_prepared(tmp_path / "d.npz", dataclasses.replace(ds, x_train=ds.x_train[:200], y_train=ds.y_train[:200]))
    save_json(tmp_path / "train_log.json", {"arch": ARCH, "seconds": 1.0, "device": "cpu", "fit": {},
                                            "poison": {"count": 5, "class_size": 20, "train_size": 200}})
    return tmp_path


def evaluate_victim(folder, model, defence=None):
    """evaluate_cohort on one BadNets victim whose weights are `model`; the metrics file it writes."""
    from pipeline_lib.evaluate import evaluate_cohort

    save_weights(folder / "model.pt", ARCH, model)
    member = {"describe": {"dataset": "digits", "attack": "badnets", "method": "badnets", "recipe": "r",
                           "defence": "none", "target": 0, "amount": "n5", "seed": 0},
              "trigger": {"pattern": "bottom_right"}, "trigger_net": None, "name": "badnets-t0-n5"}
    evaluate_cohort(str(folder / "d.npz"), [str(folder / "model.pt")], [str(folder / "train_log.json")], [member],
                    defence or {"method": "none"}, str(folder / "metrics"))
    return folder / "metrics" / "badnets-t0-n5.json"


def test_a_victim_whose_outputs_overflow_is_never_scored(digits_victim):
    assert evaluate_victim(digits_victim, build(ARCH)).exists()  # a sound model is scored
    (digits_victim / "metrics" / "badnets-t0-n5.json").unlink()
    for defence in ({"method": "none"}, {"method": "strip", "overlays": 4, "inputs": 10}):
        with pytest.raises(NonFiniteOutputs) as e:
            evaluate_victim(digits_victim, blown_up(build(ARCH)), defence)
        assert str(e.value) == (f"{digits_victim}/model.pt: the model's outputs hold NaN or infinite values on 450 of "
                                "450 images; no metric of it is recorded")
    assert list((digits_victim / "metrics").iterdir()) == []


def test_strip_never_reads_nan_probabilities_as_a_perfect_detector():
    from pipeline_lib.defences.strip import strip_entropy

    x = load_source("digits", "unused").x_test[:20]
    sound = strip_entropy(build(ARCH), x[:4], x[4:], 3, 0, torch.device("cpu"))
    assert np.isfinite(sound).all() and (sound > 0).all()
    with pytest.raises(NonFiniteOutputs, match="^the model's outputs hold NaN or infinite values on superimposed"):
        strip_entropy(blown_up(build(ARCH)), x[:4], x[4:], 3, 0, torch.device("cpu"))


def test_a_model_file_with_a_nan_weight_is_refused_by_name(tmp_path):
    model = build(ARCH)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["classifier.weight"][0, 0] = float("nan")
    torch.save({"arch": ARCH, "state_dict": state}, tmp_path / "m.pt")  # written past save_weights' own check
    with pytest.raises(ArtifactError) as e:
        load_model(tmp_path / "m.pt")
    assert str(e.value) == (f"{tmp_path}/m.pt: does not hold what this pipeline writes there (ValueError: tensor "
                            "'classifier.weight' holds NaN or infinite values (a diverged or tampered model))")


def test_a_surrogate_whose_last_step_blew_up_its_outputs_is_never_saved(digits_victim):
    from pipeline_lib.surrogates import train_surrogate

    recipe = {"model": "small_cnn", "epochs": 0.2, "batch_size": 32, "lr": 1e12}  # one step: finite loss and weights
    with pytest.raises(NonFiniteOutputs, match=f"^{digits_victim}/s.pt: the model's outputs hold NaN or infinite "
                                               "values on 450 of 450 images; training diverged, nothing saved$"):
        train_surrogate(str(digits_victim / "d.npz"), {}, recipe, 0, str(digits_victim / "s.pt"),
                        str(digits_victim / "s.json"), 1)
    assert not (digits_victim / "s.pt").exists() and not (digits_victim / "s.json").exists()


def test_a_measure_named_like_a_core_metric_never_replaces_it(digits_victim):
    log = digits_victim / "train_log.json"
    save_json(log, {**load_json(log), "defence": {"clean_accuracy": 0.999, "asr_labelled": 0.0}})
    with pytest.raises(ValueError, match=f"^{log}: defence 'none' measured 'asr_labelled', a core metric's name; no "
                                         "metric of this victim is recorded$"):
        evaluate_victim(digits_victim, build(ARCH))
    assert not (digits_victim / "metrics").exists()


@pytest.fixture
def poisoned_digits(digits_victim):
    """digits_victim's data with a BadNets poison set (5 images) for targets 0 and 1."""
    from pipeline_lib.poisons import write_poison_set

    for t in (0, 1):
        write_poison_set(str(digits_victim / "d.npz"), str(digits_victim / f"p{t}.npz"), BADNETS,
                         {"pattern": "bottom_right"}, t, "n5", 0)
    return digits_victim


BADNETS = {"method": "badnets", "trigger": "gu"}
ONE_STEP = {"model": "small_cnn", "epochs": 0.2, "batch_size": 32, "lr": 0.05}  # 200 images: 6 steps an epoch


def train_victims(folder, targets, recipe=ONE_STEP, defence=None, base=None):
    """victims.train_cohort on the poisoned digits, one member per target, into folder/out."""
    from pipeline_lib.victims import train_cohort

    train_cohort(str(folder / "d.npz"), [str(folder / f"p{t}.npz") for t in targets],
                 [("a", t, "n5") for t in targets], {"a": BADNETS}, recipe, defence or {"method": "none"}, 0,
                 str(folder / "out"), 1, bases=[str(base)] * len(targets) if base else None)


@pytest.mark.parametrize("targets", [[0, 1], [0]], ids=["stacked", "solo"])
def test_a_last_update_that_blows_up_the_outputs_saves_no_victim(poisoned_digits, targets):
    train_victims(poisoned_digits, targets)  # a sane rate trains and saves
    assert (poisoned_digits / "out" / "a" / "t0-n5" / "model.pt").exists()
    out = poisoned_digits / "out"
    for f in sorted(out.rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    with pytest.raises(NonFiniteOutputs) as e:  # one step at 1e12: finite loss and weights, NaN outputs
        train_victims(poisoned_digits, targets, {**ONE_STEP, "lr": 1e12})
    assert str(e.value) == (f"{out}/a/t0-n5/model.pt: the model's outputs hold NaN or infinite values on 200 of 200 "
                            "images; training diverged, nothing saved (is a learning rate or weight decay too large?)")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("defence", [{"method": "fine_pruning", "lr": 1e12, "epochs": 0.1, "clean_ratio": 1},
                                     {"method": "neural_cleanse", "unlearn_lr": 1e12, "epochs": 1,
                                      "unlearn_epochs": 0.2}], ids=lambda d: d["method"])
def test_a_defence_whose_last_update_blows_up_the_outputs_saves_nothing(poisoned_digits, defence):
    train_victims(poisoned_digits, [0], {**ONE_STEP, "epochs": 3})  # the undefended victim
    (poisoned_digits / "out" / "a" / "t0-n5" / "model.pt").rename(poisoned_digits / "base.pt")
    (poisoned_digits / "out" / "a" / "t0-n5" / "train_log.json").unlink()
    with pytest.raises(NonFiniteOutputs, match="a/t0-n5/model.pt: the model's outputs hold NaN or infinite values on "
                                               "200 of 200 images; training diverged, nothing saved"):
        train_victims(poisoned_digits, [0], defence=defence, base=poisoned_digits / "base.pt")
    assert list((poisoned_digits / "out" / "a" / "t0-n5").iterdir()) == []


def defences_reading_the_undefended_model() -> list[dict]:
    """A config.yaml block of every defence that reads the undefended victim."""
    from pipeline_lib import plugins

    blocks = {b["method"]: b for b in raw_config("config.yaml")["defences"].values()}
    return [blocks[name] for name, d in sorted(plugins.catalogue()["defence"].items()) if d.needs_base]


@pytest.mark.parametrize("defence", defences_reading_the_undefended_model(), ids=lambda d: d["method"])
def test_no_defence_reads_an_undefended_model_whose_outputs_or_weights_are_not_finite(poisoned_digits, defence):
    base = poisoned_digits / "base.pt"
    save_weights(base, ARCH, blown_up(build(ARCH)))
    with pytest.raises(NonFiniteOutputs) as e:
        train_victims(poisoned_digits, [0], defence=defence, base=base)
    assert str(e.value) == (f"{base}: the model's outputs hold NaN or infinite values on 200 of 200 images; refused as "
                            "the undefended model this defence reads")
    state = build(ARCH).state_dict()
    state["classifier.bias"][3] = float("inf")
    torch.save({"arch": ARCH, "state_dict": state}, base)
    with pytest.raises(ArtifactError, match=f"^{base}: does not hold .* 'classifier.bias' holds NaN or infinite"):
        train_victims(poisoned_digits, [0], defence=defence, base=base)
    assert not (poisoned_digits / "out").exists()
