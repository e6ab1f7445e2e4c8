"""A poison set or perturbed class that lies (fields the attack's config and the dataset fix, indices, labels, image
shapes, headers promising gigabytes) is refused when read, before anything is decompressed or trained, with one
ArtifactError naming the file."""
import re
import tracemalloc

import numpy as np
import pytest

from pipeline_lib.artifacts import ArtifactError, load_npz, memory_bytes, save_npz
from pipeline_lib.data import load_prepared, load_source, save_prepared
from pipeline_lib.poisons import read_perturbed, read_poison_set, write_poison_set
from test_hostile_inputs import write_npz

TARGET, AMOUNT = 3, "p0.1"  # 14 of the digits' 137 training images of class 3; WaNet adds 28 noise-mode images
ATTACKS = {"wanet": ({"method": "wanet", "trigger": "warp"}, {"pattern": "warp", "s": 2.0}),
           "badnets": ({"method": "badnets", "trigger": "gu"}, {"pattern": "bottom_right"}),
           "label_consistent": ({"method": "label_consistent", "trigger": "gu"}, {"pattern": "bottom_right"}),
           "none": ({"method": "none"}, {})}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The prepared digits and one honest poison set of each attack, written as the workflow writes them."""
    folder = tmp_path_factory.mktemp("sets")
    save_prepared(folder / "data.npz", load_source("digits", folder))
    for name, (attack, trigger) in ATTACKS.items():
        write_poison_set(str(folder / "data.npz"), str(folder / f"{name}.npz"), attack, trigger, TARGET, AMOUNT, 0)
    return folder, load_prepared(folder / "data.npz")


def read(made, name: str, path=None):
    folder, ds = made
    return read_poison_set(str(path or folder / f"{name}.npz"), ds, ATTACKS[name][0], TARGET, AMOUNT)


def tampered(made, name: str, **change) -> str:
    """A copy of an honest poison set with some arrays replaced."""
    folder, _ = made
    with np.load(folder / f"{name}.npz") as z:
        arrays = {**{k: z[k] for k in z.files}, **change}
    path = folder / f"{name}-tampered.npz"
    save_npz(path, **arrays)
    return str(path)


def refused(made, name: str, path: str, message: str) -> None:
    """Reading the set raises one ArtifactError line naming the file and saying `message`."""
    with pytest.raises(ArtifactError) as e:
        read(made, name, path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_honest_poison_sets_of_every_kind_read_back_as_written(made):
    for name, (count, crossed) in {"wanet": (14, 28), "badnets": (14, 0), "label_consistent": (14, 0),
                                   "none": (0, 0)}.items():
        ps, meta = read(made, name)
        assert (ps.count, ps.crossed) == (count, crossed)
        assert meta == {"target": TARGET, "class_size": 137, "train_size": 1347}


@pytest.mark.parametrize("crossed", [0, 42])  # the count would read 42 (all backdoored), or 0
def test_a_wanet_set_whose_crossed_count_differs_from_its_cross_ratio_is_refused(made, crossed):
    refused(made, "wanet", tampered(made, "wanet", crossed=np.int64(crossed)),
            f"crossed is {crossed}, but the prepared dataset, attack 'wanet', target 3 and amount p0.1 imply 28")


@pytest.mark.parametrize("key, lie", [("class_size", 1), ("train_size", 10), ("target", 5)])
def test_a_set_whose_sizes_or_target_differ_from_its_dataset_is_refused(made, key, lie):
    refused(made, "badnets", tampered(made, "badnets", **{key: np.int64(lie)}),
            f"{key} is {lie}, but the prepared dataset, attack 'badnets', target 3 and amount p0.1 imply")


def test_a_set_holding_fewer_examples_than_its_amount_is_refused_from_the_headers(made):
    empty = np.zeros((0, 8, 8, 1), np.uint8)
    path = tampered(made, "badnets", indices=np.zeros(0, np.int64), labels=np.zeros(0, np.int64), images=empty,
                    untriggered=empty)
    refused(made, "badnets", path, "array 'indices' has shape (0,), expected (14,)")


def honest(made, name: str, array: str) -> np.ndarray:
    """An array of an honest poison set, to tamper with."""
    with np.load(made[0] / f"{name}.npz") as z:
        return z[array].copy()


@pytest.mark.parametrize("change, message", [
    (lambda i: np.r_[-1, i[1:]], "index -1 is outside the training set's images 0..1346"),  # poisoned the last image
    (lambda i: np.r_[1000051, i[1:]], "index 1000051 is outside the training set's images 0..1346"),  # IndexError
    (lambda i: np.full_like(i, i[0]), "occurs 14 times; a poison set lists each image once"),  # count 14 for one image
])
def test_indices_outside_the_training_set_or_repeated_are_refused(made, change, message):
    refused(made, "badnets", tampered(made, "badnets", indices=change(honest(made, "badnets", "indices"))), message)


def test_a_label_outside_the_datasets_classes_is_refused(made):  # was: IndexError: Target 99 is out of bounds.
    labels = np.r_[99, honest(made, "badnets", "labels")[1:]]
    refused(made, "badnets", tampered(made, "badnets", labels=labels), "label 99 is outside the dataset's classes 0..9")


@pytest.mark.parametrize("array", ["images", "untriggered"])
def test_images_of_another_shape_or_dtype_than_the_training_images_are_refused(made, array):
    refused(made, "badnets", tampered(made, "badnets", **{array: np.zeros((14, 8, 7, 1), np.uint8)}),
            f"array '{array}' has shape (14, 8, 7, 1), expected (14, 8, 8, 1)")  # was: ValueError: shape mismatch
    refused(made, "badnets", tampered(made, "badnets", **{array: np.zeros((14, 8, 8, 1), np.uint16)}),
            f"array '{array}' has dtype uint16, expected uint8")


def test_noise_mode_examples_must_keep_their_labels(made):
    labels = honest(made, "wanet", "labels")
    labels[14:] = TARGET
    refused(made, "wanet", tampered(made, "wanet", labels=labels), "the 28 further examples of attack 'wanet' do "
                                                                    "not keep their labels")


def test_a_clean_label_set_poisoning_another_class_or_relabelling_is_refused(made):
    indices = np.r_[np.flatnonzero(made[1].y_train != TARGET)[0], honest(made, "label_consistent", "indices")[1:]]
    labels = honest(made, "label_consistent", "labels")
    labels[0] = TARGET + 1
    for tampering in ({"indices": indices}, {"labels": labels}):
        refused(made, "label_consistent", tampered(made, "label_consistent", **tampering),
                "attack 'label_consistent' poisons only images of the target class 3, labelled as such; this set "
                "has others")


def test_a_header_promising_4_000_000_images_is_refused_before_anything_is_allocated(made):
    folder, _ = made
    path = write_npz(folder / "bomb.npz", {"images": ((4_000_000, 32, 32, 1), "u1"), "indices": ((14,), "i8"),
                                           "labels": ((14,), "i8"), "untriggered": ((14, 8, 8, 1), "u1"),
                                           "crossed": ((), "i8"), "target": ((), "i8"), "class_size": ((), "i8"),
                                           "train_size": ((), "i8")})
    tracemalloc.start()
    try:
        refused(made, "badnets", str(path), "array 'images' has shape (4000000, 32, 32, 1), expected (14, 8, 8, 1)")
        assert tracemalloc.get_traced_memory()[1] < 2 ** 26  # the 4 GB were never allocated
    finally:
        tracemalloc.stop()


def test_any_archive_promising_more_than_this_machines_memory_is_refused_by_its_headers(tmp_path):
    path = write_npz(tmp_path / "scores.npz", {"probability": ((2 * memory_bytes() // 8,), "f8")})
    with pytest.raises(ArtifactError, match=f"^{path}: its arrays would take .* GiB once decompressed, more than this "
                                            "machine's .* GiB of memory$"):
        load_npz(path)


def test_a_perturbed_class_must_hold_every_training_image_of_its_class(made):
    folder, ds = made
    idx = np.flatnonzero(ds.y_train == TARGET)
    save_npz(folder / "c3.npz", indices=idx, images=ds.x_train[idx], cls=np.int64(TARGET))
    assert np.array_equal(read_perturbed(str(folder / "c3.npz"), TARGET, ds)[0], idx)
    for arrays, message in [({"indices": idx[::-1].copy()}, "indices are not those of the 137 training images"),
                            ({"images": ds.x_train[idx][:, :7]}, "array 'images' has shape (137, 7, 8, 1), expected "
                                                                 "(137, 8, 8, 1)")]:
        save_npz(folder / "c3-tampered.npz", **{"indices": idx, "images": ds.x_train[idx], "cls": np.int64(TARGET),
                                                **arrays})
        with pytest.raises(ArtifactError, match=re.escape(f"{folder}/c3-tampered.npz: {message}")):
            read_perturbed(str(folder / "c3-tampered.npz"), TARGET, ds)


def test_a_lying_set_stops_training_and_scoring_before_any_work_and_writes_nothing(made, tmp_path):
    from pipeline_lib.filtering import score_training_set
    from pipeline_lib.victims import train_cohort

    folder, _ = made
    path = tampered(made, "wanet", crossed=np.int64(0))
    recipe = {"model": "small_cnn", "epochs": 1, "batch_size": 32, "lr": 0.05}
    with pytest.raises(ArtifactError, match=f"^{path}: crossed is 0"):
        train_cohort(str(folder / "data.npz"), [path], [("w", TARGET, AMOUNT)], {"w": ATTACKS["wanet"][0]}, recipe,
                     {"method": "none"}, 0, str(tmp_path / "models"), 1)
    with pytest.raises(ArtifactError, match=f"^{path}: crossed is 0"):
        score_training_set(str(folder / "data.npz"), path, ATTACKS["wanet"][0], TARGET, AMOUNT,
                           str(tmp_path / "no-filter.pt"), str(tmp_path / "scores.npz"))
    assert list(tmp_path.iterdir()) == []
