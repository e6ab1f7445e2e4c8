"""Every registered model runs on the pipeline's image shapes and saves without pickling code."""
import pytest
import torch
from torch import nn

from pipeline_lib import models
from pipeline_lib.config import min_image_side

# the seeds' victims, narrowed through their options so that every test runs in a second on the CPU
SMALL = {"resnet18": {"width": 8}, "preact_resnet18": {"width": 8}, "mobilenet_v2": {"width_mult": 0.25}}


@pytest.mark.parametrize("name, shape", [("thesis_resnet", (3, 32, 32)), ("airbench", (3, 32, 32)),
                                         ("small_cnn", (1, 8, 8)), ("small_cnn", (1, 28, 28)),
                                         ("resnet18", (3, 32, 32)), ("preact_resnet18", (3, 32, 32)),
                                         ("mobilenet_v2", (3, 32, 32)), ("mobilenet_v2", (1, 28, 28))])
def test_models_map_images_to_logits(name, shape):
    m = models.build({"name": name, "in_channels": shape[0], "num_classes": 10})
    x = torch.rand(4, *shape)
    models.fit_to_data(m, x)
    assert m(x).shape == (4, 10)
    assert m.embed(x).shape[1] == m.classifier.in_features


def test_thesis_resnet_has_three_groups_of_five_units():
    m = models.build({"name": "thesis_resnet", "in_channels": 3, "num_classes": 10})
    blocks = [b for b in m.modules() if isinstance(b, models.PreActBlock)]
    assert len(blocks) == 15 and [b.conv2.out_channels for b in blocks[::5]] == [16, 32, 64]


def test_per_image_standardisation_matches_tensorflow():
    norm = models.InputNorm("per_image", 3)
    x = torch.rand(2, 3, 4, 4)
    out = norm(x)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-6)
    assert torch.allclose(out.std(dim=(1, 2, 3), correction=0), torch.ones(2), atol=1e-5)


def test_whitening_decorrelates_patches():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 16, 16, generator=g)
    x = x + x.roll(1, dims=1) + x.roll(1, dims=3)  # correlated channels and neighbours
    w = models.Whitening(3)
    w.fit(x, eps=1e-6)
    out = torch.nn.functional.conv2d(x.double(), w.weight[:12].double()).permute(1, 0, 2, 3).reshape(12, -1)
    second_moment = out @ out.T / out.shape[1]
    assert torch.allclose(second_moment, torch.eye(12, dtype=torch.float64), atol=1e-3)


def test_weights_round_trip(tmp_path):
    arch = {"name": "small_cnn", "in_channels": 1, "num_classes": 10}
    m = models.build(arch)
    models.save_weights(tmp_path / "m.pt", arch, m)
    arch2, state = models.load_weights(tmp_path / "m.pt")
    m2 = models.build(arch2)
    m2.load_state_dict(state)
    x = torch.rand(2, 1, 8, 8)
    assert arch2 == arch and torch.equal(m.eval()(x), m2.eval()(x))


def test_unknown_model_names_are_refused():
    with pytest.raises(ValueError, match="unknown model 'vgg99'"):
        models.build({"name": "vgg99", "in_channels": 3, "num_classes": 10})


def test_the_cifar_resnets_keep_32_pixels_through_the_stem_and_halve_them_three_times():
    x = torch.rand(2, 3, 32, 32)
    r = models.build({"name": "resnet18", "in_channels": 3, "num_classes": 10})
    stem = r.features.conv1
    assert (stem.kernel_size, stem.stride, stem.out_channels) == ((3, 3), (1, 1), 64)
    assert isinstance(r.features.maxpool, nn.Identity)
    stages = [r.features.layer1, r.features.layer2, r.features.layer3, r.features.layer4]
    assert [len(s) for s in stages] == [2] * 4 and [s[-1].conv2.out_channels for s in stages] == [64, 128, 256, 512]
    p = models.build({"name": "preact_resnet18", "in_channels": 3, "num_classes": 10})
    blocks = [b for b in p.features if isinstance(b, models.PreActBlock)]
    assert [b.conv2.out_channels for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [b.project is not None for b in blocks] == [False, False, True, False, True, False, True, False]
    # the ABL / input-aware authors' parameter counts (PreActResNet-18: theirs plus the final batch norm)
    assert [sum(t.numel() for t in m.parameters()) for m in (r, p)] == [11173962, 11172170]
    before_pool = nn.Sequential(*list(r.features.children())[:-2])
    assert before_pool(x).shape[2:] == p.features[:-3](x).shape[2:] == (4, 4)


def test_mobilenet_v2_downsamples_cifar_images_by_8():
    m = models.build({"name": "mobilenet_v2", "in_channels": 3, "num_classes": 10})
    stem = m.features[0][0][0]
    assert stem.stride == (1, 1) and m.classifier.in_features == 1280
    assert m.features[0](torch.rand(2, 3, 32, 32)).shape == (2, 1280, 4, 4)
    assert not any(isinstance(x, nn.Dropout) for x in m.modules())


@pytest.mark.parametrize("name", list(SMALL))
def test_a_seed_victim_runs_at_its_minimum_side_and_fails_below_it(name):
    side = min_image_side(name, SMALL[name])
    net = models.build({"name": name, "in_channels": 1, "num_classes": 3, **SMALL[name]}).eval()
    assert side == 1 and net(torch.zeros(2, 1, side, side)).shape == (2, 3)  # padded stride 2: n -> ceil(n / 2)
    with pytest.raises(RuntimeError):
        net(torch.zeros(2, 1, side - 1, side - 1))


@pytest.mark.parametrize("name", list(SMALL))
def test_a_seed_victim_trains_a_step_and_round_trips_through_the_artifact_format(name, tmp_path):
    torch.manual_seed(0)
    arch = {"name": name, "in_channels": 3, "num_classes": 10, **SMALL[name]}
    m = models.build(arch)
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8)
    models.fit_to_data(m, x)
    before = [p.detach().clone() for p in m.parameters()]
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    loss = nn.functional.cross_entropy(m.train()(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    models.save_weights(tmp_path / "m.pt", arch, m)
    assert torch.equal(models.load_model(tmp_path / "m.pt")(x), m.eval()(x))


@pytest.mark.parametrize("name", list(SMALL))
def test_a_seed_victim_with_group_norms_gets_opacus_per_sample_gradients(name):
    from opacus import GradSampleModule

    m = models.build({"name": name, "in_channels": 3, "num_classes": 10, "group_norm": True, **SMALL[name]})
    assert not any(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in m.modules())
    assert any(isinstance(x, nn.GroupNorm) for x in m.modules())
    dp = GradSampleModule(m.train())
    nn.functional.cross_entropy(dp(torch.rand(4, 3, 8, 8, requires_grad=True)), torch.arange(4)).backward()
    assert all(p.grad_sample.shape == (4, *p.shape) for p in m.parameters())


def test_the_model_registry_imports_torchvision_only_for_the_models_built_on_it():
    import subprocess
    import sys

    code = ("import sys, pipeline_lib.models as m; assert 'torchvision' not in sys.modules; "
            "m.build({'name': 'resnet18', 'in_channels': 3, 'num_classes': 10, 'width': 4}); "
            "assert 'torchvision' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)  # every job pays torch's import, not torchvision's too
