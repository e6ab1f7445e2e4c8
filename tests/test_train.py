"""Training is seeded and deterministic on CPU; recipes and augmentation behave as configured."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from pipeline_lib.artifacts import DivergedError
from pipeline_lib.train import Recipe, Steps, augment, train

RECIPE = Recipe(model="small_cnn", epochs=2, batch_size=16, lr=0.05, model_options={"width": 8})


def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8), np.arange(64) % 4


def test_same_seed_gives_identical_weights_on_cpu():
    x, y = data()
    a, log_a = train(x, y, 4, RECIPE, 3, torch.device("cpu"))
    b, log_b = train(x, y, 4, RECIPE, 3, torch.device("cpu"))
    c, _ = train(x, y, 4, RECIPE, 4, torch.device("cpu"))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert [e["loss"] for e in log_a["epochs"]] == [e["loss"] for e in log_b["epochs"]]
    assert log_a["steps"] == 8 and len(log_a["epochs"]) == 2


def test_step_schedule_follows_milestone_epochs_and_triangle_peaks():
    r = Recipe(model="small_cnn", epochs=100, batch_size=50, lr=0.1, milestones=(40, 60))
    assert [r.lr_factor(s, 100_000, 1000) for s in (0, 39_999, 40_000, 60_000)] == [1, 1, 0.1, pytest.approx(0.01)]
    t = Recipe(model="airbench", epochs=10, batch_size=1, lr=1, schedule="triangle")
    assert t.lr_factor(0, 100, 10) == pytest.approx(0.2) and t.lr_factor(23, 100, 10) == 1
    assert t.lr_factor(100, 100, 10) == pytest.approx(0.07)


def test_augmentation_crops_and_flips_whole_images():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    r = Recipe(model="small_cnn", epochs=1, batch_size=1, lr=1, augment=True, crop_padding=0)
    out = augment(x, r, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    shifted = augment(x, Recipe(model="small_cnn", epochs=1, batch_size=1, lr=1, crop_padding=1, flip=False,
                                pad_mode="constant"), torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):  # each image is some 4x4 window of its zero-padded self, and the windows differ in place
        windows = [padded[i, :, r:r + 4, c:c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(shifted[i], w) for w in windows)
    offsets = [next(k for k in range(9) if torch.equal(shifted[i], padded[i, :, k // 3:k // 3 + 4, k % 3:k % 3 + 4]))
               for i in range(2)]
    assert offsets != [4, 4]  # not every image left uncropped


def test_rotation_turns_each_image_about_its_centre_by_its_own_angle_within_the_limit():
    x = torch.zeros(16, 1, 33, 33)
    x[:, :, 16, 4:29] = 1.0                 # a horizontal bar through the centre, 24 pixels long
    r = Recipe(model="small_cnn", epochs=1, batch_size=1, lr=1, crop_padding=0, flip=False, rotation=10)
    out = augment(x, r, torch.Generator().manual_seed(0))
    assert (out[:, 0, 16, 16] == 1).all()  # the centre stays
    rows = [out[i, 0].nonzero()[:, 0].float() for i in range(16)]
    tilt = [(rr.max() - rr.min()).item() for rr in rows]
    assert max(tilt) <= 2 * 12 * math.tan(math.radians(10)) + 1  # at most 10 degrees across the bar
    assert len(set(tilt)) > 2                                   # angles differ between images


def test_cutout_zeroes_one_square_per_image_and_nothing_else():
    x = torch.ones(32, 1, 16, 16)
    r = Recipe(model="small_cnn", epochs=1, batch_size=1, lr=1, crop_padding=0, flip=False, cutout=4)
    out = augment(x, r, torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros <= 16).all() and (zeros > 0).all() and len(set(zeros.tolist())) > 1  # 4x4, less at borders
    for img in out[:, 0]:
        rows, cols = (img == 0).nonzero(as_tuple=True)
        assert (img[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == 0).all()  # one solid square


def test_continuing_with_an_optimiser_keeps_its_momentum_and_takes_the_new_recipes_rate():
    x, y = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8), np.arange(64) % 10
    first = Recipe(model="small_cnn", epochs=1, batch_size=16, lr=0.05, model_options={"width": 4})
    then = Recipe(model="small_cnn", epochs=0.25, batch_size=16, lr=0.01, model_options={"width": 4})
    runs = []
    for carry in (True, False):
        model, _ = train(x, y, 10, first, 0, torch.device("cpu"))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model, _ = train(x, y, 10, first, 0, torch.device("cpu"), init=model, optimizer=opt)
        fresh = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model, _ = train(x, y, 10, then, 0, torch.device("cpu"), init=model, optimizer=opt if carry else fresh)
        runs.append(model)
        assert (opt if carry else fresh).param_groups[0]["lr"] == 0.01
    assert any(not torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))


def test_unknown_recipe_keys_are_named():
    with pytest.raises(ValueError, match="not a key of recipe"):
        Recipe.from_config({"model": "small_cnn", "epochs": 1, "batch_size": 1, "lr": 1, "warmup": 3})


def test_progress_reports_rate_and_time_left_at_its_interval_and_at_the_end(capsys):
    from pipeline_lib.runlog import Progress

    now = [0.0]
    progress = Progress("training", 100, interval=30, clock=lambda: now[0])
    for step in range(1, 101):
        now[0] = step * 1.0                  # one step per second
        progress.update(step)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "training: 30/100 steps (30%), 1 steps/s, 1m10s left"
    assert lines[1:] == ["training: 60/100 steps (60%), 1 steps/s, 40s left",
                         "training: 90/100 steps (90%), 1 steps/s, 10s left",
                         "training: 100/100 steps (100%), 1 steps/s, 0s left"]



def test_the_configs_gpu_options_reach_stacked_and_defended_training(tmp_path, monkeypatch):
    """The workflow's `gpu` block arrives as one Accel in stacked cohorts and in the defences' training alike."""
    import pipeline_lib.train as training
    import pipeline_lib.victims as victims
    from pipeline_lib.accel import Accel
    from pipeline_lib.data import load_source, save_prepared
    from pipeline_lib.poisons import write_poison_set

    ds = load_source("digits", "unused")
    save_prepared(tmp_path / "d.npz", dataclasses.replace(ds, x_train=ds.x_train[:200], y_train=ds.y_train[:200]))
    for t in (0, 1):
        write_poison_set(str(tmp_path / "d.npz"), str(tmp_path / f"p{t}.npz"), {"method": "badnets", "trigger": "gu"},
                         {"pattern": "bottom_right"}, t, "n5", 0)
    seen = []
    stacked, plain = victims.train_stacked, training.train
    monkeypatch.setattr(victims, "train_stacked", lambda *a, **k: seen.append(a[8]) or stacked(*a, **k))
    monkeypatch.setattr(training, "train", lambda *a, **k: seen.append(k["accel"]) or plain(*a, **k))
    recipe = {"model": "small_cnn", "epochs": 0.2, "batch_size": 32, "lr": 0.05}
    for targets in ([0, 1], [0]):  # a stacked cohort, then a lone member trained through its defence
        victims.train_cohort(str(tmp_path / "d.npz"), [str(tmp_path / f"p{t}.npz") for t in targets],
                             [("a", t, "n5") for t in targets], {"a": {"method": "badnets", "trigger": "gu"}}, recipe,
                             {"method": "none"}, 0, str(tmp_path / "out"), 1, gpu={"bf16": False, "compile": True})
    assert seen == [Accel(bf16=False, compile=True)] * 2


def test_the_training_skeleton_takes_exactly_its_steps_across_passes_and_stops_on_a_non_finite_loss():
    seen = []
    loop = Steps(5, "test", after_step=seen.append)
    batches = []
    while loop.running:
        batches += [b for b in loop.take(range(3))]   # passes of 3 batches: 3 + 2
        loop.end_pass([0.5])
    assert batches == [0, 1, 2, 0, 1] and seen == [1, 2, 3, 4, 5] and loop.passes == 2
    with pytest.raises(DivergedError, match="member 1 in epoch 3 is nan"):
        loop.end_pass([0.1, math.nan])
