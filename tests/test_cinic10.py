"""CINIC-10 as a registry dataset: its archive md5-checked, its ImageNet-derived images picked by file name and
labelled by class folder, and pixel interpolation moving towards them (thesis 4.5, 7.9). Offline: the tests serve
a small archive in CINIC-10's layout over HTTP on this machine."""
import functools
import hashlib
import http.server
import io
import re
import socket
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, load_config
from pipeline_lib import cinic10
from pipeline_lib.artifacts import ArtifactError
from pipeline_lib.config import ConfigError, check_references
from pipeline_lib.data import Dataset, load_source, save_prepared
from pipeline_lib.perturb import perturb_classes

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = {"train": 0, "valid": 1, "test": 2}
PER_CLASS = 2   # ImageNet-derived images per class and split; each split also holds one CIFAR-10 image per class
CIFAR_VALUE = 255   # the pixel value of every CIFAR-derived image: none may be loaded


def value(split: str, cls: int, i: int) -> int:
    """The pixel value of an ImageNet-derived image, telling its split, class and number apart."""
    return 60 * SPLITS[split] + 5 * cls + i + 1


def add_png(tar, name, image):
    """Add an image (HxW greyscale or HxWx3) to an open tar archive as a PNG file."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    info = tarfile.TarInfo(name)
    info.size = len(buf.getvalue())
    tar.addfile(info, io.BytesIO(buf.getvalue()))


def cinic_archive(path, grey=False):
    """A tar.gz in CINIC-10's layout (<split>/<class>/cifar10-<split>-<index>.png and n<synset>_<number>.png, a
    README beside), and its md5."""
    with tarfile.open(path, "w:gz") as tar:
        readme = tarfile.TarInfo("README.md")
        readme.size = 9
        tar.addfile(readme, io.BytesIO(b"CINIC-10\n"))
        for split in SPLITS:
            for c, name in enumerate(CIFAR10_CLASSES):
                add_png(tar, f"{split}/{name}/cifar10-{split}-{c}.png", np.full((32, 32, 3), CIFAR_VALUE, np.uint8))
                for i in reversed(range(PER_CLASS)):   # not in name order: the loader sorts
                    shape = (32, 32) if grey and i == 0 else (32, 32, 3)   # ImageNet holds greyscale JPEGs
                    image = np.full(shape, value(split, c, i), np.uint8)
                    add_png(tar, f"{split}/{name}/n0{2000000 + c}_{i}.png", image)
    return hashlib.md5(path.read_bytes()).hexdigest()


class Quiet(http.server.SimpleHTTPRequestHandler):
    """A file server that logs nothing."""

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The release URL and md5 pointed at a small archive in CINIC-10's layout, served over HTTP on this machine;
    the data_root it downloads into."""
    archive = tmp_path / "served" / cinic10.ARCHIVE
    archive.parent.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=archive.parent))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setattr(cinic10, "URL", f"http://127.0.0.1:{server.server_address[1]}/{cinic10.ARCHIVE}")
    monkeypatch.setattr(cinic10, "MD5", cinic_archive(archive, grey=True))
    yield archive, tmp_path / "data_root"
    server.shutdown()
    server.server_close()


def test_only_the_imagenet_derived_images_are_loaded_labelled_by_their_class_folder(served):
    ds = load_source("cinic10_imagenet", served[1])
    assert ds.classes == CIFAR10_CLASSES   # a CINIC-10 label means the CIFAR-10 class of the same number
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        assert x.shape == (10 * PER_CLASS, 32, 32, 3) and x.dtype == np.uint8
        assert np.array_equal(y, np.repeat(np.arange(10), PER_CLASS))   # in file-name order: class, then number
        want = [value(split, c, i) for c in range(10) for i in range(PER_CLASS)]
        assert np.array_equal(x[:, 0, 0, 0], want) and (x == x[:, :1, :1, :1]).all()   # greyscale made RGB
    assert CIFAR_VALUE not in ds.x_train and CIFAR_VALUE not in ds.x_test


def test_an_archive_with_the_release_md5_is_not_downloaded_again(served):
    archive, root = served
    load_source("cinic10_imagenet", root)
    archive.unlink()   # the URL now fails: only the copy in data_root can be read
    assert len(load_source("cinic10_imagenet", root).y_train) == 10 * PER_CLASS


def test_an_archive_whose_md5_differs_from_the_release_is_refused_in_one_line(served):
    archive, root = served
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as e:
        load_source("cinic10_imagenet", root)
    message = str(e.value)
    assert "\n" not in message and message.startswith("cinic10_imagenet: ")
    assert f"official md5 {cinic10.MD5}" in message and f"data_root {root} " in message
    assert f"the file there has md5 {hashlib.md5(bytes(data)).hexdigest()}" in message


def test_without_network_the_download_fails_in_one_line_naming_the_dataset_and_data_root(tmp_path, monkeypatch):
    with socket.socket() as s:   # a port nothing listens on: the connection is refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(cinic10, "URL", f"http://127.0.0.1:{port}/{cinic10.ARCHIVE}")
    with pytest.raises(ArtifactError) as e:
        load_source("cinic10_imagenet", tmp_path / "data_root")
    message = str(e.value)
    assert "\n" not in message and re.match(r"cinic10_imagenet: .* in data_root \S*data_root and its download", message)


def test_an_image_of_another_size_is_named(tmp_path):
    archive = tmp_path / cinic10.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        add_png(tar, "train/cat/n02123045_1.png", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ArtifactError, match=r"train/cat/n02123045_1.png is 64x64 pixels, expected 32x32"):
        cinic10.imagenet_images(archive)


def dataset(values, classes=CIFAR10_CLASSES):
    """Five training images per class, every pixel of one image `values[class]`."""
    y = np.repeat(np.arange(len(values)), 5)
    x = np.repeat(np.asarray(values, np.uint8)[y][:, None, None, None], 32, 1).repeat(32, 2).repeat(3, 3)
    return Dataset(x, y, x[:2], y[:2], classes)


@pytest.mark.parametrize("partner", ["random", "offset"])
def test_pixel_partners_come_from_the_partner_dataset_and_another_class(tmp_path, partner):
    save_prepared(tmp_path / "cifar10.npz", dataset([0] * 10))
    save_prepared(tmp_path / "cinic.npz", dataset([100 + c for c in range(10)]))   # the value names the class
    spec = {"method": "pixel_interpolation", "tau": 1.0, "partner": partner, "partner_offset": 1,
            "partner_dataset": "cinic10_imagenet"}
    perturb_classes(str(tmp_path / "cifar10.npz"), spec, str(tmp_path / "out"), 1, partners=str(tmp_path / "cinic.npz"))
    for c in range(10):
        moved = np.load(tmp_path / "out" / f"c{c}.npz", allow_pickle=False)["images"]   # tau 1: the partner itself
        assert (moved >= 100).all()   # every partner is a partner-dataset image
        classes = set(moved[:, 0, 0, 0] - 100)
        assert c not in classes   # another class's
        if partner == "offset":
            assert classes == {(c + 1) % 10}


def test_a_partner_dataset_of_other_classes_is_refused_when_perturbing(tmp_path):
    save_prepared(tmp_path / "cifar10.npz", dataset([0] * 10))
    save_prepared(tmp_path / "other.npz", dataset([100 + c for c in range(10)], tuple("abcdefghij")))
    spec = {"method": "pixel_interpolation", "tau": 0.2, "partner": "random", "partner_dataset": "other"}
    with pytest.raises(ArtifactError, match="partner classes a, b, .* differ from"):
        perturb_classes(str(tmp_path / "cifar10.npz"), spec, str(tmp_path / "out"), 1,
                        partners=str(tmp_path / "other.npz"))


@pytest.mark.parametrize("change, message", [
    ({"source": "mnist"}, "partner_dataset': dataset 'cinic10_imagenet' has 10 classes of 28x28x1 images, dataset "
                          "'cifar10' .* 10 of 32x32x3"),
    (None, "partner_dataset': unknown dataset 'cinic10_imagenet'"),
])
def test_planning_refuses_a_partner_dataset_that_is_missing_or_of_other_images(change, message):
    cfg = load_config("config.yaml")
    cfg["claims"] = {}   # the partner check alone
    if change is None:
        del cfg["datasets"]["cinic10_imagenet"]
        cfg["surrogates"]["blackbox"]["dataset"] = "cifar10"
    else:
        cfg["datasets"]["cinic10_imagenet"] = change
    with pytest.raises(ConfigError, match=message):
        check_references(cfg)


def test_the_black_box_surrogate_learns_50000_imagenet_derived_images_by_the_unmodified_recipe():
    cfg = load_config("config.yaml")
    blackbox, recipes = cfg["surrogates"]["blackbox"], cfg["recipes"]
    assert (blackbox["dataset"], blackbox["split"], blackbox["size"]) == ("cinic10_imagenet", "train", 50000)
    assert cfg["datasets"]["cinic10_imagenet"]["source"] == "cinic10_imagenet"
    vgg = recipes[blackbox["recipe"]]
    assert vgg["model"] == "vgg" and {k: v for k, v in vgg.items() if not k.startswith("model")} == {
        k: v for k, v in recipes["thesis_resnet"].items() if not k.startswith("model")}   # 4.6: "unmodified"
    assert vgg["epochs"] * blackbox["size"] // vgg["batch_size"] == 100_000   # the white-box surrogates' steps


def test_the_full_config_plans_the_cinic10_surrogate_and_pixel_partners_without_downloading(tmp_path):
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(ROOT / "config.yaml"), "-n", "results/figures/fig4-4.png",
                        "results/figures/fig4-5.png"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = re.findall(r"^rule (\w+):\n(.*?)\n\n", r.stdout + r.stderr, re.M | re.S)
    data = "input: results/data/cinic10_imagenet.npz"
    assert any(rule == "prepare_data" and "output: results/data/cinic10_imagenet.npz" in job for rule, job in jobs)
    assert any(rule == "train_surrogate" and data in job and "surrogates/blackbox/" in job for rule, job in jobs)
    assert any(rule == "perturb_classes" and "results/data/cinic10_imagenet.npz" in job
               and "perturbed/cifar10/pixel_t02_cinic10/classes" in job for rule, job in jobs)
    assert not (tmp_path / "data").exists()   # planning downloads nothing
