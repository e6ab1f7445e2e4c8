"""Defences: ABL's loss and isolation, spectral and clustering detectors, DP-SGD through opacus."""
import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from pipeline_lib import models
from conftest import load_config
from pipeline_lib import plugins
from pipeline_lib.defences import detection
from pipeline_lib.defences.abl import Config as AblConfig, isolate_lowest, lga
from pipeline_lib.defences.activation_clustering import flag_clusters
from pipeline_lib.defences.nad import StageMaps
from pipeline_lib.defences.spectral import flag_spectral, spectral_scores
from pipeline_lib.plugins import Job
from pipeline_lib.privacy import (clipped_microbatch_sum, freeze_all_but_last, from_pretrained, noised_mean,
                                  train_frozen)
from pipeline_lib.train import Recipe

RECIPE = Recipe(model="small_cnn", epochs=1, batch_size=16, lr=0.05, momentum=0.0, model_options={"width": 4})
DP = {"trainable_layers": 3, "lr": 1.0, "lot_size": 64, "steps": 1, "physical_batch": 32, "noise_multiplier": 0.0,
      "max_grad_norm": 1.0, "delta": 1e-5}


def test_lga_descends_above_gamma_and_ascends_below_it():
    for value, sign in ((0.8, 1.0), (0.3, -1.0)):
        loss = torch.tensor(value, requires_grad=True)
        lga(loss, 0.5).backward()
        assert loss.grad.item() == sign


def test_isolation_takes_the_lowest_loss_share():
    losses = np.array([0.9, 0.01, 0.5, 0.02, 0.7, 0.3, 0.8, 0.6, 0.4, 0.2])
    assert sorted(isolate_lowest(losses, 0.2).tolist()) == [1, 3]
    assert isolate_lowest(losses, 0.01).tolist() == [1]  # at least one example


def test_detection_precision_and_recall():
    flagged, poisoned = np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 1, 0, 1], bool)
    assert detection(flagged, poisoned) == {"flagged": 3, "precision": 2 / 3, "recall": 2 / 3}


def planted(seed=0, n=200, planted_share=0.05):
    """Two classes of Gaussian features; class 1 holds a few examples shifted along one direction."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(2 * n, 16))
    y = np.repeat([0, 1], n)
    poisoned = np.zeros(2 * n, bool)
    poisoned[n:n + int(planted_share * n)] = True
    f[poisoned, 0] += 8
    return f, y, poisoned


def test_spectral_signatures_rank_planted_outliers_first():
    f, y, poisoned = planted()
    scores = spectral_scores(f, y)
    assert set(np.argsort(-scores)[:poisoned.sum()]) == set(np.flatnonzero(poisoned))
    flagged = flag_spectral(scores, y, eps=0.05)
    assert (flagged & poisoned).sum() == poisoned.sum() and flagged[y == 0].sum() == 15  # 1.5 x 5% x 200


def test_activation_clustering_flags_the_small_cluster_and_only_there():
    f, y, poisoned = planted(planted_share=0.15)
    flagged = flag_clusters(f, y, components=2, max_size=0.35, seed=0)
    assert detection(flagged[y == 1], poisoned[y == 1])["recall"] == 1.0
    assert detection(flagged, poisoned)["precision"] >= 0.9


@pytest.fixture
def pretrained(tmp_path):
    """A small CNN on 8x8 grey images saved as a 'public-data' model (random weights; 5 classes)."""
    torch.manual_seed(0)
    arch = {"name": "small_cnn", "in_channels": 1, "num_classes": 5, "width": 4}
    path = tmp_path / "pretrained.pt"
    models.save_weights(path, arch, models.build(arch))
    return str(path)


def digits_like(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), rng.integers(0, 10, n)


def test_only_the_last_two_convolutions_and_the_classifier_train():
    model = models.build({"name": "small_cnn", "in_channels": 1, "num_classes": 10, "width": 4})
    params = freeze_all_but_last(model, 3)
    assert {id(p) for p in params} == {id(p) for p in model.parameters() if p.requires_grad}
    assert len(params) == 4  # two bias-free convolutions, the classifier's weight and bias


def changed(before, model):
    return torch.cat([(a - b).flatten() for a, b in zip(before, model.state_dict().values())]).norm().item()


def test_dp_sgd_clips_each_example_so_one_lot_moves_the_weights_at_most_lr_times_the_bound(pretrained):
    x, y = digits_like()
    before = [v.clone() for v in models.load_model(pretrained).state_dict().values()][:-2]  # classifier is new
    spec = DP | {"lot_size": len(y), "max_grad_norm": 0.01}  # every example in the lot; tiny clipping bound
    private, info = train_frozen(x, y, RECIPE, spec, 0, torch.device("cpu"), pretrained, 10, private=True)
    plain, _ = train_frozen(x, y, RECIPE, spec, 0, torch.device("cpu"), pretrained, 10, private=False)
    assert changed(before, private) <= 1.0 * 0.01 * 1.0001  # sum of clipped gradients / lot size <= bound
    assert changed(before, plain) > 10 * changed(before, private)
    assert info["defence"]["epsilon"] == float("inf")  # noise 0 gives no privacy


def test_reported_epsilon_is_opacus_accounting_of_the_steps_taken(pretrained):
    x, y = digits_like(n=256)
    spec = DP | {"noise_multiplier": 1.0, "steps": 3}
    _, info = train_frozen(x, y, RECIPE, spec, 0, torch.device("cpu"), pretrained, 10, private=True)
    accountant = RDPAccountant()
    accountant.history = [(1.0, 64 / 256, 3)]
    assert info["defence"]["steps"] == 3
    assert info["defence"]["epsilon"] == pytest.approx(accountant.get_epsilon(1e-5))


def test_dp_training_is_seeded(pretrained):
    x, y = digits_like()
    spec = DP | {"noise_multiplier": 1.0, "steps": 2, "lot_size": 16}
    runs = [train_frozen(x, y, RECIPE, spec, 3, torch.device("cpu"), pretrained, 10, private=True)[0]
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))


MICRO = DP | {"microbatches": 4, "physical_batch": 32}  # lots of 64 in microbatches of 16, two per forward pass


def test_a_microbatch_sum_clips_each_microbatch_as_one_gradient(pretrained):
    x, y = digits_like(n=8)
    model = from_pretrained(pretrained, 10, 0)
    params = freeze_all_but_last(model, 3)
    xb, yb = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(y)
    manual = [torch.zeros_like(p) for p in params]
    for part in range(4):  # contiguous microbatches of 2, each mean gradient scaled to norm <= 0.01
        loss = torch.nn.functional.cross_entropy(model(xb[2 * part:2 * part + 2]), yb[2 * part:2 * part + 2])
        grads = torch.autograd.grad(loss, params)
        norm = torch.cat([g.flatten() for g in grads]).norm()
        assert norm > 0.01
        manual = [m + g * 0.01 / norm for m, g in zip(manual, grads)]
    total = clipped_microbatch_sum(model, params, xb, yb, 4, 0.01)
    assert all(torch.allclose(t, m, atol=1e-7) for t, m in zip(total, manual))
    assert torch.cat([t.flatten() for t in total]).norm() <= 4 * 0.01 * 1.0001


def test_noise_on_a_clipped_sum_has_std_noise_multiplier_times_bound_over_the_microbatches():
    gen = torch.Generator().manual_seed(0)
    noised = noised_mean([torch.zeros(1000, 1000)], 16, 1.0 * 1.0, gen)[0]  # the thesis: noise 1, clip 1, 16
    assert noised.mean().abs() < 1e-3 and noised.std().item() == pytest.approx(1 / 16, rel=0.01)


def trainable_update(pretrained, model):
    """The change of the trained layers from the pretrained model (with its seeded new classifier)."""
    start = from_pretrained(pretrained, 10, 0)
    trained = {id(p) for p in freeze_all_but_last(start, 3)}
    return torch.cat([(a - b).flatten() for a, b in zip(model.parameters(), start.parameters()) if id(b) in trained])


def test_one_microbatched_dp_sgd_update_carries_noise_of_the_thesis_formula(pretrained):
    x, y = digits_like()
    spec = MICRO | {"noise_multiplier": 100.0}  # the gradient (norm <= 1) vanishes under noise of std 100 / 4
    model, info = train_frozen(x, y, RECIPE, spec, 0, torch.device("cpu"), pretrained, 10, private=True)
    assert trainable_update(pretrained, model).std().item() == pytest.approx(100 * 1.0 / 4, rel=0.1)
    assert info["defence"]["microbatches"] == 4


def test_a_noiseless_microbatched_update_moves_the_weights_at_most_lr_times_the_bound_whatever_the_images(pretrained):
    x, y = digits_like()
    spec = MICRO | {"max_grad_norm": 0.05}   # lr 1: the mean of 4 microbatch gradients clipped to 0.05 each
    honest, _ = train_frozen(x, y, RECIPE, spec, 0, torch.device("cpu"), pretrained, 10, private=True)
    x[:, 2:5, 2:5], y[:] = 255, 7             # every image triggered and relabelled
    hostile, _ = train_frozen(x, y, RECIPE, spec, 0, torch.device("cpu"), pretrained, 10, private=True)
    updates = [trainable_update(pretrained, m) for m in (honest, hostile)]
    assert all(u.norm() <= 0.05 * 1.0001 for u in updates) and (updates[0] - updates[1]).norm() > 0.01


def test_microbatched_epsilon_is_opacus_accounting_at_the_lot_sampling_rate(pretrained):
    x, y = digits_like(n=256)
    _, info = train_frozen(x, y, RECIPE, MICRO | {"noise_multiplier": 1.0, "steps": 3}, 0, torch.device("cpu"),
                           pretrained, 10, private=True)
    accountant = RDPAccountant()
    accountant.history = [(1.0, 64 / 256, 3)]
    assert info["defence"]["steps"] == 3
    assert info["defence"]["epsilon"] == pytest.approx(accountant.get_epsilon(1e-5))


def test_the_full_config_runs_dp_sgd_as_thesis_7_10():
    cfg = load_config("config.yaml")
    dp = {name: d for name, d in cfg["defences"].items() if d["method"] == "dp_sgd"}
    assert sorted(d["noise_multiplier"] for d in dp.values()) == pytest.approx([0, 1 / 3, 2 / 3, 1], abs=1e-3)
    for d in dp.values():
        assert (d["max_grad_norm"], d["lot_size"], d["microbatches"], d["steps"], d["trainable_layers"]) == \
            (1.0, 2000, 16, 10000, 3)
        assert d["steps"] * d["lot_size"] / 50000 == 400  # epochs
    public = cfg["surrogates"][d["pretrained"]]
    assert cfg["datasets"][public["dataset"]]["source"] == "cifar100_coarse" and not public.get("adversarial")
    baseline = cfg["defences"]["sgd_frozen"]
    assert baseline["method"] == "frozen_sgd" and baseline["pretrained"] == d["pretrained"]
    assert (baseline["lot_size"], baseline["steps"]) == (2000, 10000)
    assert baseline["lr"] == pytest.approx(d["lr"] / d["microbatches"])  # 7.10: the rate divided by 16
    for fig in ("fig5-1", "fig5-2"):
        trigger = cfg["triggers"][cfg["attacks"][cfg["figures"][fig]["attack"]]["trigger"]]
        assert cfg["recipes"][cfg["figures"][fig]["recipe"]]["augment"] and trigger.get("amplitude", 255) == 255


def test_abl_runs_the_authors_phases_on_the_victims_architecture():
    recipe = Recipe(model="thesis_resnet", epochs=100, batch_size=50, lr=0.1, augment=True, milestones=(40, 60),
                    weight_decay=2e-4, model_options={"norm": "per_image"})
    isolation, finetuning, unlearning = AblConfig().phases(recipe)
    for phase in (isolation, finetuning, unlearning):
        assert (phase.model, phase.model_options, phase.batch_size, phase.momentum, phase.nesterov,
                phase.weight_decay) == ("thesis_resnet", {"norm": "per_image"}, 128, 0.9, True, 1e-4)
    assert (isolation.epochs, isolation.lr, isolation.milestones, isolation.augment) == (20, 0.1, (), False)
    assert (finetuning.epochs, finetuning.lr, finetuning.milestones, finetuning.augment, finetuning.crop_padding,
            finetuning.flip, finetuning.cutout) == (60, 0.1, (40,), True, 4, True, 3)
    assert (unlearning.epochs, unlearning.lr, unlearning.augment) == (5, 5e-4, False)


def test_abl_isolates_the_examples_learnt_fastest_and_reports_precision_against_the_poisons():
    x, y = digits_like(n=96)
    x[:4], y[:4] = 255, 3                   # four identical all-white images labelled 3: the easiest to fit
    poisoned = np.zeros(96, bool)
    poisoned[:4] = True
    abl, config = plugins.settings("defence", {"method": "abl", "gamma": 0.0, "isolation_ratio": 4 / 96,
                                               "isolation_epochs": 3, "unlearning_epochs": 1, "unlearning_lr": 5e-4})
    model, info = abl.fit(Job(x, y, 10, RECIPE, 0, torch.device("cpu"), poisoned), config)
    assert info["defence"]["isolated"] == 4
    assert info["defence"]["isolation_precision"] == info["defence"]["isolation_recall"] == 1.0
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_dp_sgd_without_a_public_model_trains_the_whole_network_with_group_norms(tmp_path):
    x, y = digits_like()
    model, info = train_frozen(x, y, RECIPE, DP | {"noise_multiplier": 1.0}, 0, torch.device("cpu"), None, 10,
                               private=True)
    assert info["arch"]["group_norm"] and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    models.save_weights(tmp_path / "m.pt", info["arch"], model)
    assert all(torch.equal(a, b) for a, b in zip(models.load_model(tmp_path / "m.pt").state_dict().values(),
                                                 model.state_dict().values()))


def test_clp_bounds_each_channel_by_its_largest_singular_value_and_prunes_the_outlier_channel():
    from torch import nn

    from pipeline_lib.defences.clp import conv_bn_pairs, uclc

    conv, bn = nn.Conv2d(2, 12, 3, bias=False), nn.BatchNorm2d(12).eval()
    with torch.no_grad():
        conv.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
        conv.weight[5] *= 40                                   # one channel amplifies far more than the rest
        bn.running_var.fill_(4.0)
        bn.weight.fill_(-2.0)
    lips = uclc(conv, bn)
    expected = torch.linalg.svdvals(conv.weight[3].flatten(1))[0] * 2 / (4 + bn.eps) ** 0.5
    assert torch.allclose(lips[3], expected) and lips.argmax() == 5
    assert (lips > lips.mean() + 3 * lips.std()).nonzero().flatten().tolist() == [5]   # the authors' u = 3
    net = nn.Sequential(conv, nn.MaxPool2d(2), bn, nn.ReLU(), nn.BatchNorm2d(12))
    pairs, unpaired = conv_bn_pairs(net, torch.rand(1, 2, 8, 8))
    assert pairs == [(conv, bn)] and unpaired == 1   # through the max-pool; the second norm follows a ReLU


def test_clp_leaves_the_pre_activation_units_batch_norms_unscored():
    from pipeline_lib.defences.clp import conv_bn_pairs

    net = models.build({"name": "thesis_resnet", "in_channels": 3, "num_classes": 10, "units": 1})
    pairs, unpaired = conv_bn_pairs(net, torch.rand(1, 3, 32, 32))
    # the stem feeds the first unit's first norm; every unit's second norm follows its first convolution; the
    # first norms of later units and the final norm read sums of two branches
    assert (len(pairs), unpaired) == (4, 3)


def test_fine_pruning_removes_exactly_the_least_active_features_until_accuracy_drops_by_the_ratio():
    from pipeline_lib.defences.fine_pruning import prune_count, prune_order

    order = prune_order(np.array([0.5, 0.0, 0.9, 0.1, 0.3, 0.0]))
    assert order.tolist() == [1, 5, 3, 4, 0, 2]          # least active first, ties by index
    accuracy = {0: 0.9, 1: 0.9, 2: 0.88, 3: 0.85, 4: 0.80, 5: 0.5, 6: 0.1}   # by features pruned
    assert prune_count(order, 1, lambda pruned: accuracy[len(pruned)], 0.9, 0.1) == 3   # 0.80 is 11% below 0.9
    assert prune_count(order, 2, lambda pruned: accuracy[len(pruned)], 0.9, 0.1) == 2


def test_strip_entropy_of_a_constant_prediction_is_zero_and_its_rates_follow_the_fitted_threshold():
    from torch import nn

    from pipeline_lib.defences.strip import entropy, strip_entropy, strip_rates

    assert entropy(np.eye(3)).tolist() == [0, 0, 0] and entropy(np.full((1, 4), 0.25)).tolist() == [2.0]

    class Constant(nn.Module):
        def forward(self, x):
            return torch.tensor([[50.0, 0, 0]]).repeat(len(x), 1)
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    assert np.allclose(strip_entropy(Constant(), x, x, 10, 0, torch.device("cpu")), 0, atol=1e-6)
    unsure = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))   # sure on dark images, a coin toss on bright ones
    with torch.no_grad():
        unsure[1].weight.copy_(torch.stack([torch.zeros(64), torch.full((64,), 0.25)]))
        unsure[1].bias.copy_(torch.tensor([16.0, 0.0]))
    dark, pool = np.zeros((1, 8, 8, 1), np.uint8), np.r_[np.zeros((5, 8, 8, 1)), np.full((5, 8, 8, 1), 255)]
    mean = strip_entropy(unsure, dark, pool.astype(np.uint8), 400, 0, torch.device("cpu"))[0]
    assert 0.4 < mean < 0.6   # the overlay is added: half the draws bright (1 bit), half dark (0 bits)
    rng = np.random.default_rng(0)
    clean_fit, clean_held = rng.normal(2.0, 0.1, 20000), rng.normal(2.0, 0.1, 20000)
    rates = strip_rates(clean_fit, clean_held, np.r_[np.full(90, 0.2), np.full(10, 3.0)], 0.01)
    assert abs(rates["strip_threshold"] - (2.0 - 2.326 * 0.1)) < 0.01     # the 1% quantile of N(2, 0.1)
    assert abs(rates["strip_frr"] - 0.01) < 0.003 and rates["strip_far"] == 0.1 and 0.85 < rates["strip_auroc"] < 0.95
    assert (rates["strip_far_hits"], rates["strip_far_n"]) == (10, 100)     # the counts behind the rates
    assert rates["strip_frr_hits"] / rates["strip_frr_n"] == rates["strip_frr"]


@pytest.mark.slow
def test_the_first_wave_of_methods_runs_through_the_workflow(tmp_path):
    """CLP, fine-pruning, Neural Cleanse, NAD, ANP and STRIP against a BadNets victim in a leaderboard (DER among its
    metrics); WaNet with its noise mode."""
    import subprocess
    import sys

    import pandas as pd
    import yaml

    from conftest import ROOT

    cfg = {
        "train_threads": 1,
        "datasets": {"digits": {"source": "digits"}},
        "triggers": {"gu": {"pattern": "bottom_right"}, "warp": {"pattern": "warp"}},
        "attacks": {"gu": {"method": "badnets", "trigger": "gu"}, "wanet": {"method": "wanet", "trigger": "warp"}},
        "defences": {"clp": {"method": "clp"}, "fp": {"method": "fine_pruning", "clean_ratio": 0.1, "epochs": 20},
                     "strip": {"method": "strip", "overlays": 20},
                     "nc": {"method": "neural_cleanse", "clean_ratio": 0.1, "unlearn_epochs": 10},
                     "nad": {"method": "nad", "clean_ratio": 0.1}, "anp": {"method": "anp", "iterations": 500}},
        "recipes": {"cnn": {"model": "small_cnn", "model_options": {"width": 8}, "epochs": 8, "batch_size": 32,
                            "lr": 0.05}},
        "figures": {"grid": {"kind": "defence_heatmap", "title": "new defences", "dataset": "digits", "attack": "gu",
                             "recipe": "cnn", "targets": [0], "counts": [60],
                             "defences": ["none", "clp", "fp", "strip", "nc", "nad", "anp"],
                             "metric": ["clean_accuracy", "asr_labelled", "robust_accuracy", "der"]},
                    "wanet": {"kind": "asr_heatmap", "title": "WaNet", "dataset": "digits", "attack": "wanet",
                              "recipe": "cnn", "targets": [0], "counts": [135], "metric": "asr_labelled"}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(tmp_path / "c.yaml"), "--cores", "2", "results/c/figures/grid.png",
                        "results/c/tables/wanet.csv"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    t = pd.read_csv(tmp_path / "results/c/tables/grid.csv").set_index("defence")
    none, strip = t.loc["none"], t.loc["strip"]
    assert none["asr_labelled"] > 0.8                                  # the backdoor is in
    assert strip["asr_labelled"] == none["asr_labelled"]               # STRIP detects; the model is the same
    assert 0 <= strip["strip_far"] <= 1 and strip["strip_auroc"] > 0.5  # and tells triggered inputs apart
    n_train = len(np.load(tmp_path / "results/c/data/digits.npz")["y_train"])
    assert t.loc["fp", "fp_clean_images"] == round(0.1 * n_train)   # the defender's clean share
    assert 0 < t.loc["fp", "fp_pruned"] < t.loc["fp", "fp_features"]  # dormant features pruned, not all
    assert t.loc["clp", "clp_layers"] == 3 and t.loc["clp", "clp_unpaired"] == 0   # every conv-BN pair scored
    nc = t.loc["nc"]
    assert nc["nc_suspect"] == 0 and nc["nc_flagged"] >= 1 and nc["nc_anomaly_index"] > 2   # names the target
    assert nc["nc_names_target"] == 1 and nc["asr_labelled"] < none["asr_labelled"]   # unlearning cuts the ASR
    assert t.loc["nad", "nad_layers"] == 3 and t.loc["nad", "nad_clean_images"] == round(0.1 * n_train)
    assert t.loc["anp", "anp_neurons"] == 8 + 16 + 32 and t.loc["anp", "anp_pruned"] >= 0
    der = (np.maximum(0, none["asr_labelled"] - t["asr_labelled"]) - np.maximum(0, none["clean_accuracy"]
                                                                                  - t["clean_accuracy"]) + 1) / 2
    assert t["der"][["none", "strip"]].isna().all()            # no twin to rate, and a detector keeps the model
    assert np.allclose(t["der"].drop(["none", "strip"]), der.drop(["none", "strip"]))
    header = next(line for line in (tmp_path / "results/c/tables/grid.md").read_text().splitlines() if line[:1] == "|")
    columns = [h.strip() for h in header.strip("|").split("|")]
    assert columns[:8] == ["attack", "dataset", "poisoned", "defence", "clean accuracy", "ASR",
                           "ASR (excl. target preds)", "accuracy on triggered"]
    assert "DER" in header and "NC names the target" in header and "ANP pruned" in header
    wanet = pd.read_csv(tmp_path / "results/c/tables/wanet.csv").iloc[0]
    # the warp implants at pc = 0.1 beside twice as many noise-mode images (0.54 here: the noise makes the field
    # harder to learn on 8 x 8 images), far above the 0.1 of target predictions without it
    assert wanet["asr_labelled"] > 0.3 and wanet["clean_accuracy"] > 0.9
    assert wanet["count"] == 135                                       # the backdoored images; noise mode's beside


def test_neural_cleanse_anomaly_index_is_the_mad_score_below_the_median():
    from pipeline_lib.defences.neural_cleanse import anomaly_index

    norms = np.array([10.0, 12.0, 11.0, 2.0, 13.0])          # median 11, |deviations| 1, 1, 0, 9, 2: MAD 1
    assert np.allclose(anomaly_index(norms), [1 / 1.4826, 0, 0, 9 / 1.4826, 0])   # above the median: never flagged


def one_pixel_backdoor() -> torch.nn.Module:
    """A linear model on 8x8 images whose label 3 fires on one bright corner pixel: a one-pixel backdoor."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.normal_(0, 0.3)
        model[1].bias.zero_()
        model[1].weight[3], model[1].bias[3] = 0, -10
        model[1].weight[3, 63] = 30
    return model.eval().requires_grad_(False)


def test_neural_cleanse_reverses_the_smallest_trigger_for_the_backdoored_label():
    from pipeline_lib.defences.neural_cleanse import Config, anomaly_index, reverse_trigger

    model = one_pixel_backdoor()
    x = torch.rand(64, 1, 8, 8) * 0.5
    found = [reverse_trigger(model, x, label, Config(epochs=30), torch.Generator().manual_seed(0))
             for label in range(10)]
    norms = np.array([f[2] for f in found])
    assert all(f[3] for f in found)                           # every label reached by some trigger
    assert norms.argmin() == 3 and norms[3] < 3 and anomaly_index(norms).argmax() == 3
    assert anomaly_index(norms)[3] > 2 and found[3][0][0, 0, 7, 7] > 0.5   # flagged; the mask covers the pixel


def test_nad_attention_map_is_the_unit_normalised_channel_sum_of_powered_activations():
    from pipeline_lib.defences.nad import attention, distillation_loss

    fm = torch.tensor([[[[1.0, -2.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]]]])   # 1 image, 2 channels, 2 x 2
    am = attention(fm, 2.0)                                                     # sums 2, 4, 0, 4: norm 6
    assert torch.allclose(am, torch.tensor([[2 / 6, 4 / 6, 0.0, 4 / 6]]), atol=1e-6)
    other = torch.zeros_like(fm)
    other[0, 0, 0, 0] = 3.0                                                     # map [1, 0, 0, 0]
    expected = 500 * ((am - torch.tensor([[1.0, 0, 0, 0]])) ** 2).mean()
    assert torch.isclose(distillation_loss([fm], [other], (500.0, 1000.0), 2.0), 1000 / 500 * expected)  # last beta
    assert distillation_loss([fm, fm], [fm, fm], (500.0, 1000.0), 2.0) == 0


def test_nad_distils_each_stages_last_map_above_one_pixel_largest_first():
    from pipeline_lib.architectures import small_cnn

    model = small_cnn.build(small_cnn.Config(width=4), 1, 10).eval()   # 8x8 -> pool -> 4x4 -> pool -> 2x2 -> pool 2x2
    maps = StageMaps(model)
    model(torch.rand(2, 1, 8, 8))
    shapes = [tuple(m.shape) for m in maps.last(5)]
    assert shapes == [(2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 2, 2)]       # one map per size, no 1x1 map
    assert (maps.last(3)[0] >= 0).all()                                 # the first stage's output: after its ReLU
    assert [tuple(m.shape) for m in maps.last(2)] == shapes[1:]
    maps.close()
    assert not model.features[0]._forward_hooks


def test_nad_distils_residual_units_with_their_sums_not_the_next_units_normalised_input():
    from pipeline_lib.architectures import Widths, preact_resnet18
    from pipeline_lib.models import PreActBlock

    model = preact_resnet18.build(Widths(width=4), 3, 10).eval()   # 32 -> 16 -> 8 -> 4 pixels
    units = [m for m in model.features if isinstance(m, PreActBlock)]
    outputs = []
    hooks = [u.register_forward_hook(lambda m, i, o: outputs.append(o)) for u in units]
    maps = StageMaps(model)
    model(torch.rand(2, 3, 32, 32))
    last_of_size = {o.shape[-1]: o for o in outputs}                     # the last unit of each size
    assert [m.shape[-1] for m in maps.last(3)] == [16, 8, 4]
    assert all(m is last_of_size[m.shape[-1]] for m in maps.last(3)[:2])   # the unit's output, its sum included
    for h in hooks:
        h.remove()


def test_anp_masks_scale_batch_norms_and_its_perturbation_moves_scales_and_shifts():
    from torch import nn

    from pipeline_lib.defences.anp import MaskedNorms

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten()).eval()
    with torch.no_grad():
        model[1].bias.fill_(0.5)
    x = torch.rand(2, 1, 5, 5)
    masked = MaskedNorms(model)
    assert torch.equal(masked(x, False), model(x))                     # masks of 1: the model itself
    with torch.no_grad():
        masked.masks[0][1] = 0
        masked.noise[0].fill_(0.1)                                      # scales x (mask + 0.1)
        masked.noise[1].fill_(-1.0)                                     # shifts x (1 - 1) = 0
    out = masked(x, False).view(2, 3, -1)
    assert torch.allclose(out[:, 1], torch.full_like(out[:, 1], 0.5))  # a zero mask: the neuron is its shift
    plain = model(x).view(2, 3, -1) - 0.5                                # each neuron's scaled part
    perturbed = masked(x, True).view(2, 3, -1)
    assert torch.allclose(perturbed[:, 0], 1.1 * plain[:, 0])          # scale 1 + 0.1, no shift
    assert torch.allclose(perturbed[:, 1], 0.1 * plain[:, 1])          # scale 0 + 0.1: a pruned neuron revived


def test_anp_optimises_only_the_masks_and_keeps_them_in_the_unit_interval():
    import dataclasses

    from torch import nn

    from pipeline_lib.defences import anp

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    weights = {k: v.clone() for k, v in model.named_parameters()}
    x, y = torch.rand(64, 1, 6, 6), torch.randint(0, 2, (64,))
    config = dataclasses.replace(anp.Config(), iterations=100, batch_size=16)
    values = anp.optimise_masks(model, x, y, config, lambda b: b, torch.Generator().manual_seed(0)).mask_values()
    assert values.shape == (4,) and (values >= 0).all() and (values <= 1).all() and (values < 1).any()
    assert all(torch.equal(v, weights[k]) for k, v in model.named_parameters())   # the model's weights stay


def test_anp_zeroes_the_scale_of_every_neuron_at_or_below_the_threshold_and_keeps_its_shift():
    from torch import nn

    from pipeline_lib.defences.anp import prune

    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))
    masks = [torch.tensor([0.1, 0.5]), torch.tensor([0.2, 0.9])]
    assert prune(model, masks, 0.2) == 2
    assert model[1].weight.tolist() == [0, 1] and model[3].weight.tolist() == [0, 1]
    assert model[1].bias.tolist() == [0, 0] and model[3].bias.tolist() == [0, 0]   # shifts untouched (here 0)
