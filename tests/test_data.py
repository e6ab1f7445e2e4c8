"""Every dataset source becomes the same canonical arrays; bad archives fail with the array's name."""
import numpy as np
import pytest

from pipeline_lib.artifacts import ArtifactError
from pipeline_lib.data import CIFAR100_COARSE, describe, load_prepared, load_source, save_prepared, with_train_counts


def write(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


def arrays(n=20, shape=(8, 8, 3)):
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (n, *shape), dtype=np.uint8), "y_train": np.arange(n) % 4,
            "x_test": rng.integers(0, 256, (n // 2, *shape), dtype=np.uint8), "y_test": np.arange(n // 2) % 4}


def test_digits_are_split_deterministically_and_stratified():
    a, b = load_source("digits", "unused"), load_source("digits", "unused")
    assert a.x_train.shape == (1347, 8, 8, 1) and a.x_test.shape == (450, 8, 8, 1)
    assert np.array_equal(a.x_train, b.x_train) and a.x_train.dtype == np.uint8 and a.x_train.max() == 255
    share = np.bincount(a.y_test) / (np.bincount(a.y_test) + np.bincount(a.y_train))
    assert np.abs(share - 0.25).max() < 0.01


def test_planning_knows_the_digits_class_sizes_the_split_makes():
    info = describe("digits")
    assert info.train_counts == tuple(np.bincount(load_source("digits", "unused").y_train))
    assert info.image_shape == (8, 8, 1) and info.num_classes == 10


def test_local_npz_round_trips_through_the_prepared_artifact(tmp_path):
    ds = load_source(write(tmp_path / "d.npz", **arrays()), "unused")
    save_prepared(tmp_path / "p.npz", ds)
    back = load_prepared(tmp_path / "p.npz")
    assert np.array_equal(back.x_train, ds.x_train) and back.classes == ("0", "1", "2", "3")


def test_grayscale_archives_without_channel_axis_get_one(tmp_path):
    ds = load_source(write(tmp_path / "g.npz", **arrays(shape=(8, 8))), "unused")
    assert ds.x_train.shape == (20, 8, 8, 1)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), "missing array 'y_test'"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "array 'x_train' has dtype float32"),
    (lambda a: a.update(y_train=a["y_train"][:5]), "y_train has shape"),
    (lambda a: a.update(x_test=a["x_test"][:, :4]), "differ from x_test"),
    # 16-bit images are refused, never wrapped modulo 256
    (lambda a: a.update(x_train=a["x_train"].astype(np.uint16) * 4), "array 'x_train' has dtype uint16, expected uint8"),
    (lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]), "x_test is empty"),
    (lambda a: a.update(x_train=a["x_train"][:0], y_train=a["y_train"][:0]), "x_train is empty"),
])
def test_broken_archives_name_the_offending_array(tmp_path, change, message):
    a = arrays()
    change(a)
    with pytest.raises(ArtifactError, match=message):
        load_source(write(tmp_path / "bad.npz", **a), "unused")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_labels_of_any_integer_dtype_are_read_and_the_class_count_spans_both_splits(tmp_path, dtype):
    a = arrays()
    a["y_train"], a["y_test"] = a["y_train"].astype(dtype), (a["y_test"] + 2).astype(dtype)  # 0..3 and 2..5
    ds = load_source(write(tmp_path / "u.npz", **a), "unused")
    assert ds.classes == ("0", "1", "2", "3", "4", "5") and ds.y_test.dtype == np.int64


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    a = arrays()
    with pytest.raises(ArtifactError, match="object arrays"):
        load_source(write(tmp_path / "extra.npz", **a, extra=np.array([object()] * 2, dtype=object)), "unused")
    a["y_train"] = np.array([object()] * 20, dtype=object)
    with pytest.raises(ArtifactError, match="'y_train' has dtype object"):  # refused from its header
        load_source(write(tmp_path / "evil.npz", **a), "unused")


def test_missing_file_and_unknown_source_are_named(tmp_path):
    with pytest.raises(ArtifactError, match="file not found"):
        load_source(f"npz:{tmp_path}/nope.npz", "unused")
    with pytest.raises(ArtifactError, match="unknown dataset source 'imagenet'"):
        load_source("imagenet", "unused")


def test_cifar100_superclasses_have_five_fine_classes_each():
    assert np.bincount(CIFAR100_COARSE).tolist() == [5] * 20


def test_train_counts_unbalance_the_training_set_and_keep_the_test_set():
    ds = load_source("digits", ".")
    counts = [20] + [100] * 9  # the 001 seed's unbalanced MNIST in miniature: few zeros
    small = with_train_counts(ds, counts)
    assert np.bincount(small.y_train).tolist() == counts and len(small.y_test) == len(ds.y_test)
    first_zeros = ds.x_train[ds.y_train == 0][:20]
    assert (small.x_train[small.y_train == 0] == first_zeros).all()
    with pytest.raises(ArtifactError, match="asks for 1000 images of class 0"):
        with_train_counts(ds, [1000] + counts[1:])
