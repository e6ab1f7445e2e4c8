"""Triggers are pixel-exact and follow the amplitude semantics of the authors' poison_attack.py."""
import numpy as np
import pytest

from pipeline_lib.triggers import make_trigger

W, B = 255, 0
# Bottom-right 3x3 of the authors' "bottom-right" mask: (-3..-1) x (-3..-1), 1 = white, -1 = black.
AUTHORS_BOTTOM_RIGHT = {(-1, -1): 1, (-1, -2): -1, (-1, -3): 1, (-2, -1): -1, (-2, -2): 1,
                        (-2, -3): -1, (-3, -1): 1, (-3, -2): -1, (-3, -3): -1}


def grey(h=8, w=8, c=3, v=100):
    return np.full((2, h, w, c), v, np.uint8)


def test_bottom_right_full_amplitude_replaces_the_corner_patch():
    out = make_trigger("bottom_right").apply(grey())
    for (r, c), sign in AUTHORS_BOTTOM_RIGHT.items():
        assert (out[:, r, c] == (W if sign > 0 else B)).all()
    untouched = np.ones((8, 8), bool)
    untouched[-3:, -3:] = False
    assert (out[:, untouched] == 100).all()


def test_reduced_amplitude_adds_on_white_and_subtracts_on_black_with_clipping():
    out = make_trigger("bottom_right", amplitude=32).apply(grey(v=100))
    assert out[0, -1, -1, 0] == 132 and out[0, -1, -2, 0] == 68
    near_white = make_trigger("bottom_right", amplitude=32).apply(grey(v=240))
    assert near_white[0, -1, -1, 0] == 255 and near_white[0, -1, -2, 0] == 208


def test_four_corner_trigger_is_invariant_to_horizontal_flips():
    t = make_trigger("four_corner", amplitude=255)
    x = grey(v=100)
    assert np.array_equal(t.apply(x)[:, :, ::-1], t.apply(x[:, :, ::-1]))
    # right corners carry the original pattern, as in the authors' "all-corners" mask
    assert np.array_equal(t.apply(x)[:, -3:, -3:], make_trigger("bottom_right").apply(x)[:, -3:, -3:])
    assert t.apply(x)[0, 0, 0, 0] == W and t.apply(x)[0, 0, 1, 0] == B  # top-left (0,0)=1, (0,1)=-1


def test_center_x_is_red_on_colour_images_and_white_on_grey_ones():
    out = make_trigger("center_x").apply(grey(h=32, w=32, v=100))
    assert tuple(out[0, 16, 16]) == (255, 0, 0) and tuple(out[0, 15, 15]) == (255, 0, 0)
    assert tuple(out[0, 15, 16]) == (100, 100, 100)  # between the arms: untouched
    assert (out != 100).any(axis=-1).sum(axis=(1, 2)).tolist() == [5, 5]  # five pixels per image
    assert make_trigger("center_x").apply(grey(c=1, h=32, w=32))[0, 16, 16, 0] == 255


def test_sig_adds_a_horizontal_sinusoid_of_the_configured_amplitude_and_frequency():
    out = make_trigger("sig", amplitude=30, frequency=6).apply(grey(h=4, w=32, v=100)).astype(int)
    # v(i, j) = 30 sin(2 pi j 6 / 32): j = 1 -> 30 sin(3 pi / 8) = 27.7 -> 28; j = 4 -> 30 sin(3 pi / 2) = -30; j = 8 -> 0
    assert out[0, 0, 1, 0] == 128 and out[0, 0, 4, 0] == 70 and out[0, 0, 8, 0] == 100
    assert (out == out[:, :1]).all() and (out == out[..., :1]).all()  # the same in every row and channel
    assert make_trigger("sig", amplitude=30).apply(grey(w=32, v=250)).max() == 255  # clipped


def test_blend_mixes_a_fixed_seeded_pattern_at_ratio_alpha():
    t = make_trigger("blend", alpha=0.25, seed=3)
    zeros, whites = t.apply(grey(v=0)).astype(float), t.apply(grey(v=255)).astype(float)
    pattern = np.random.default_rng(3).integers(0, 256, (8, 8, 3))
    assert np.abs(zeros[0] - 0.25 * pattern).max() <= 0.5 and np.abs(whites[0] - (191.25 + 0.25 * pattern)).max() <= 0.5
    assert (t.apply(grey()) == t.apply(grey())).all() and (t.apply(grey()) != make_trigger("blend", seed=4).apply(grey())).any()


@pytest.mark.parametrize("kw", [{"pattern": "star"}, {"pattern": "bottom_right", "amplitude": 0},
                                {"pattern": "bottom_right", "amplitude": 300}, {"pattern": "blend", "alpha": 0}])
def test_bad_trigger_parameters_are_refused(kw):
    with pytest.raises(ValueError):
        make_trigger(**kw)


def test_wanet_warp_is_the_identity_at_zero_strength_and_moves_pixels_within_the_image_otherwise():
    from pipeline_lib.triggers.warp import warp_grid

    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(make_trigger("warp", s=0.0).apply(images), images)
    grid = warp_grid(16, 4, 0.5, 1.0, 0)
    assert grid.abs().max() <= 1                            # every pixel is read from inside the image
    shift = (grid - warp_grid(16, 4, 0.0, 1.0, 0)).abs()   # in pixels: the field is normalised by its mean |offset|
    assert 0 < float(shift.mean()) * 15 / 2 < 1             # a fraction of a pixel on average, as WaNet's s = 0.5
    warped = make_trigger("warp").apply(images)
    assert warped.shape == images.shape and warped.dtype == np.uint8 and not np.array_equal(warped, images)
    assert np.array_equal(warped, make_trigger("warp").apply(images))   # a fixed field: the same every time
    assert not np.array_equal(warped, make_trigger("warp", seed=1).apply(images))
