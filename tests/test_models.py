"""Every registered model runs on the pipeline's image shapes and saves without pickling code."""
import pytest
import torch

from pipeline_lib import models


@pytest.mark.parametrize("name, shape", [("thesis_resnet", (3, 32, 32)), ("airbench", (3, 32, 32)),
                                         ("small_cnn", (1, 8, 8)), ("small_cnn", (1, 28, 28))])
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
