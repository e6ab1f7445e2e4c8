"""The GPU speed options, applied on the CPU (`Accel(on_cpu=True)`): each option acts, keeps its promise against
fp32 (channels-last and compilation: the same arithmetic; bf16: within a stated bound), and works on every training
path: solo and stacked, plain and adversarial, every defence; DP-SGD trains in fp32 whatever the options say."""
import numpy as np
import pytest
import torch
from torch import nn

from pipeline_lib import models, plugins
from pipeline_lib.accel import STEP_BOUNDS, Accel, update_gap
from pipeline_lib.adversarial import pgd_adversary
from pipeline_lib.data import load_digits
from pipeline_lib.layout import Amount
from pipeline_lib.plugins import Job
from pipeline_lib.poisons import poison
from pipeline_lib.stacking import StackedClassifier, train_stacked
from pipeline_lib.train import Recipe, train

CPU = torch.device("cpu")
FP32 = Accel(bf16=False, channels_last=False, on_cpu=True)
OPTIONS = {"bf16": Accel(channels_last=False, on_cpu=True), "channels_last": Accel(bf16=False, on_cpu=True),
           "compile": Accel(bf16=False, channels_last=False, compile=True, on_cpu=True),
           "cuda_graphs": Accel(bf16=False, channels_last=False, cuda_graphs=True, on_cpu=True),
           "all_fp32": Accel(bf16=False, compile=True, cuda_graphs=True, on_cpu=True),
           "all": Accel(compile=True, cuda_graphs=True, on_cpu=True)}
FP32_BOUND, BF16_BOUND = STEP_BOUNDS["cpu"], STEP_BOUNDS["bf16"]  # what the options promise on the CPU
ARCHS = [("small_cnn", {"width": 8}), ("thesis_resnet", {"units": 1}), ("resnet18", {"width": 4})]
TRIGGER = plugins.method("trigger", "bottom_right").config(amplitude=255)


@pytest.fixture(scope="module")
def noise():
    """Uniform-noise 8x8 RGB images in 10 classes and two BadNets poison sets of them."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (320, 8, 8, 3), dtype=np.uint8), rng.integers(0, 10, 320)
    return x, y, [poison("badnets", x, y, 3, Amount(count=20), TRIGGER, 0),
                  poison("badnets", x, y, 5, Amount(count=40), TRIGGER, 1)]


@pytest.mark.parametrize("name, options", ARCHS + [("preact_resnet18", {"width": 4}),
                                                   ("mobilenet_v2", {"width_mult": 0.25})])
def test_channels_last_puts_a_stacked_cohorts_4d_tensors_in_nhwc_and_changes_no_value(name, options):
    arch = {"name": name, "in_channels": 3, "num_classes": 10, **options}
    stacked = StackedClassifier([models.build(arch) for _ in range(2)])
    with pytest.raises(RuntimeError, match="rank 4"):  # why Accel does not call Module.to: 5-D input-norm buffers
        StackedClassifier([models.build(arch)]).to(memory_format=torch.channels_last)
    before = {k: t.clone() for k, t in stacked.state_dict().items()}
    prepared = OPTIONS["channels_last"].prepare(stacked, CPU)
    for key, t in prepared.state_dict().items():
        assert torch.equal(t, before[key]), key
        if t.dim() == 4:
            assert t.is_contiguous(memory_format=torch.channels_last), key


def test_the_options_act_off_cuda_only_when_asked():
    x = torch.rand(2, 3, 8, 8)
    for accel, acts in ((Accel(compile=True), False), (Accel(compile=True, on_cpu=True), True)):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 2))
        assert accel.acts(CPU) is acts and accel.acts(torch.device("cuda"))
        with accel.autocast(CPU):
            assert (model(x).dtype == torch.bfloat16) is acts
        prepared = accel.prepare(model, CPU)
        assert prepared[0].weight.is_contiguous(memory_format=torch.channels_last) is acts
        assert (accel.forward(prepared, CPU) is prepared) is not acts


def test_cuda_graphs_ask_inductor_for_its_reduce_overhead_mode_on_cuda(monkeypatch):
    asked = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: asked.append(kw) or model)
    model, cuda = nn.Linear(2, 2), torch.device("cuda")
    for accel in (Accel(compile=True), Accel(cuda_graphs=True), Accel(cuda_graphs=True, on_cpu=True)):
        accel.forward(model, cuda)
        accel.forward(model, CPU)
    assert asked == [{"mode": None}, {"mode": "reduce-overhead"}, {"mode": "reduce-overhead"},
                     {"backend": "aot_eager"}]


def run(path: str, noise, recipe: Recipe, accel: Accel) -> nn.Module:
    """The first member trained along one training path under `accel`."""
    x, y, sets = noise
    adversary = pgd_adversary({"norm": "linf", "eps": 8, "steps": 2, "random_start": True}, 0) \
        if path.endswith("adversarial") else None
    if path.startswith("stacked"):
        return train_stacked(x, y, sets, 10, recipe, 0, CPU, adversary, accel)[0][0]
    return train(*sets[0].apply_to(x, y), 10, recipe, 0, CPU, adversary=adversary, accel=accel)[0]


@pytest.mark.parametrize("option", [o for o in OPTIONS if o != "cuda_graphs"])  # on the CPU: compile's
@pytest.mark.parametrize("path, name, model_options", [("stacked", *a) for a in ARCHS] + [
    (path, *ARCHS[0]) for path in ("solo", "solo adversarial", "stacked adversarial")])
def test_every_option_on_every_training_path_keeps_its_promise_against_fp32(noise, path, option, name,
                                                                            model_options):
    bf16 = OPTIONS[option].bf16
    steps = 1 if bf16 else 3
    recipe = Recipe(model=name, model_options=model_options, epochs=(steps - 0.5) / 10, batch_size=32, lr=0.05,
                    augment=path == "solo")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    got = run(path, noise, recipe, OPTIONS[option])
    if OPTIONS[option].compile or OPTIONS[option].cuda_graphs:
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the forward ran compiled
    ref = run(path, noise, recipe, FP32)
    start = run(path, noise, Recipe(**{**recipe.__dict__, "epochs": 0}), FP32)
    gap = update_gap(got, ref, start)
    assert gap <= (BF16_BOUND if bf16 else FP32_BOUND)
    assert gap > 0 or not bf16  # autocast acted


SMALL = {  # every defence at a few steps
    "none": {}, "adv_training": {"norm": "linf", "eps": 25.5, "step": 12.8, "steps": 2},
    "abl": {"isolation_epochs": 1, "batch_size": 32, "finetuning_epochs": 1, "finetuning_milestones": [],
            "unlearning_epochs": 1, "cutout": 0},
    "spectral": {"eps": 0.05}, "activation_clustering": {"components": 2},
    "fine_pruning": {"epochs": 1, "step_ratio": 0.2, "clean_ratio": 0.3},
    "neural_cleanse": {"epochs": 1, "unlearn_epochs": 1, "clean_ratio": 0.3},
    "nad": {"teacher_epochs": 1, "epochs": 1, "clean_ratio": 0.3}, "anp": {"iterations": 20, "clean_ratio": 0.3},
    "clp": {}, "strip": {},
    "dp_sgd": {"lot_size": 64, "microbatches": 4, "physical_batch": 32, "steps": 3, "noise_multiplier": 1.0,
               "lr": 0.1},
    "frozen_sgd": {"lot_size": 64, "steps": 3, "lr": 0.01},
}
# defences whose own optimisation runs in fp32 without the options (the same bits under any of them)
OPTION_FREE = ("anp", "clp", "dp_sgd", "frozen_sgd", "strip")
DIGITS = Recipe(model="small_cnn", model_options={"width": 8}, epochs=1, batch_size=32, lr=0.05)


@pytest.fixture(scope="module")
def defence_job(tmp_path_factory):
    """A BadNets-poisoned share of the digits, its undefended victim and a 'public' model to start DP-SGD from."""
    ds = load_digits(None)
    x, y = ds.x_train[:240], ds.y_train[:240]
    ps = poison("badnets", x, y, 0, Amount(count=12), TRIGGER, 0)
    px, py = ps.apply_to(x, y)
    folder = tmp_path_factory.mktemp("defences")
    base, info = train(px, py, 10, DIGITS, 0, CPU, accel=FP32)
    models.save_weights(folder / "base.pt", info["arch"], base)
    public = train(x, y, 10, DIGITS, 1, CPU, accel=FP32)[0]
    models.save_weights(folder / "public.pt", info["arch"], public)
    return (px, py, ps.mask(len(py)), str(folder / "public.pt"), str(folder / "base.pt"), (x, y),
            ds.x_test[:200])


def test_every_defence_of_the_catalogue_is_exercised_under_the_options():
    """A new defence adds its few-step settings to SMALL."""
    assert set(plugins.catalogue()["defence"]) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_defence_trains_under_the_options_as_under_fp32(defence_job, name):
    x, y, mask, public, base, clean, test = defence_job
    method, config = plugins.settings("defence", {"method": name, **SMALL[name]})

    def fit(accel: Accel) -> tuple[nn.Module, dict]:
        torch._dynamo.reset()
        return method.fit(Job(x, y, 10, DIGITS, 0, CPU, mask, public, base, None, accel, clean), config)

    ref, ref_info = fit(FP32)
    for option in ("all_fp32", "all"):
        got, info = fit(OPTIONS[option])
        weights, ref_weights = models.flat_weights(got), models.flat_weights(ref)
        assert torch.isfinite(weights).all() and set(info.get("defence", {})) == set(ref_info.get("defence", {}))
        gap = float((weights - ref_weights).norm() / ref_weights.norm())
        if name in OPTION_FREE:
            assert gap == 0, f"{name} under {option}: {gap:.2g} of the weights' norm from fp32"
        elif option == "all_fp32":  # bf16's drift over a defence's many steps has no tight bound: its promise is
            assert gap <= FP32_BOUND, f"{name}: {gap:.2g} of the weights' norm from fp32"  # checked per step above
