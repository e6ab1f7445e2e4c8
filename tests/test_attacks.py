"""Attacks select, trigger and label exactly the images the threat model allows."""
import numpy as np
import pytest

from pipeline_lib.poisons import poison
from pipeline_lib.layout import Amount
from pipeline_lib.triggers import make_trigger

Y = np.repeat(np.arange(10), 50)
X = np.full((500, 8, 8, 1), 90, np.uint8)


def test_amounts_round_trip_through_path_tokens():
    assert Amount.parse("p0.015").rate == 0.015 and Amount(rate=0.015).token == "p0.015"
    assert Amount.parse("n75").count == 75 and Amount(rate=1.0).token == "p1"


def test_a_rate_is_a_fraction_of_the_target_class():
    assert Amount(rate=0.06).resolve(5000) == 300 and Amount(rate=0.004).resolve(5000) == 20
    assert Amount(count=75).resolve(5000) == 75


@pytest.mark.parametrize("bad", [{"rate": 0.0}, {"rate": 1.5}, {"rate": -0.1}, {"count": -1}])
def test_amounts_outside_the_valid_range_are_refused(bad):
    with pytest.raises(ValueError):
        Amount(**bad)


def test_no_poison_is_only_the_clean_victims_amount():
    assert Amount.parse("n0").count == 0
    with pytest.raises(ValueError, match="count 0 of 50 target-class images poisons no image"):
        Amount(count=0).resolve(50)  # a poisoning attack must poison something


def test_badnets_relabels_images_from_any_class_to_the_target():
    ps = poison("badnets", X, Y, 3, Amount(count=100), make_trigger("bottom_right"), seed=0)
    assert len(ps.indices) == 100 and (ps.labels == 3).all()
    assert len(np.unique(Y[ps.indices])) > 5
    assert (ps.images[:, -1, -1, 0] == 255).all()


def test_label_consistent_poisons_only_the_target_class_and_keeps_labels():
    ps = poison("label_consistent", X, Y, 7, Amount(rate=0.5), make_trigger("bottom_right"), seed=0)
    assert len(ps.indices) == 25 and (Y[ps.indices] == 7).all() and (ps.labels == 7).all()
    x, y = ps.apply_to(X, Y)
    assert np.array_equal(y, Y) and (x[ps.indices, -1, -1, 0] == 255).all()


def test_selection_is_seeded():
    a = poison("badnets", X, Y, 1, Amount(count=20), make_trigger("bottom_right"), seed=4)
    b = poison("badnets", X, Y, 1, Amount(count=20), make_trigger("bottom_right"), seed=4)
    c = poison("badnets", X, Y, 1, Amount(count=20), make_trigger("bottom_right"), seed=5)
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)


def test_asking_for_more_images_than_exist_names_the_shortfall():
    with pytest.raises(ValueError, match="only 50 images of class 2"):
        poison("label_consistent", X, Y, 2, Amount(count=51), make_trigger("bottom_right"), seed=0)
    with pytest.raises(ValueError, match="unknown attack method"):
        poison("sleeper", X, Y, 2, Amount(count=1), make_trigger("bottom_right"), seed=0)


def test_a_clean_victims_poison_set_is_empty_whatever_its_target_and_amount():
    x, y = np.zeros((20, 4, 4, 1), np.uint8), np.arange(20) % 2
    ps = poison("none", x, y, 0, Amount(count=0), None, 0)
    assert len(ps.indices) == len(ps.images) == len(ps.labels) == 0
    cx, cy = ps.apply_to(x, y)
    assert np.array_equal(cx, x) and np.array_equal(cy, y)


def test_wanet_adds_cross_ratio_times_as_many_noise_warped_images_with_their_labels_kept():
    from pipeline_lib.attacks.wanet import Config

    x = np.random.default_rng(0).integers(0, 256, (500, 8, 8, 1), dtype=np.uint8)
    warp = make_trigger("warp", s=2.0)
    ps = poison("wanet", x, Y, 3, Amount(count=20), warp, seed=0, config=Config(trigger="warp", cross_ratio=2))
    backdoored, crossed = ps.indices[:20], ps.indices[20:]
    assert ps.count == 20 and ps.crossed == 40 and len(crossed) == 40
    assert (ps.labels[:20] == 3).all() and np.array_equal(ps.labels[20:], Y[crossed])
    assert not set(backdoored) & set(crossed) and len(set(crossed)) == 40
    assert np.array_equal(ps.images[:20], warp.apply(x[backdoored]))            # the fixed field: the backdoor
    noisy = ps.images[20:]
    assert not np.array_equal(noisy, warp.apply(x[crossed])) and not np.array_equal(noisy, x[crossed])
    assert ps.mask(500).sum() == 20 and ps.mask(500)[backdoored].all()        # detection scores the backdoor only
    plain = poison("wanet", x, Y, 3, Amount(count=20), warp, seed=0, config=Config(trigger="warp", cross_ratio=0))
    assert np.array_equal(plain.indices, backdoored) and plain.crossed == 0
