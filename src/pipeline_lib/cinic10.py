"""CINIC-10 (Darlow et al. 2018): its official archive, downloaded and md5-checked by torchvision's own download
helper, and the ImageNet-derived images read from it by file name, labelled by class folder (thesis 4.5, 7.9)."""
from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import numpy as np

from .artifacts import ArtifactError

URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz"   # doi:10.7488/ds/2448
ARCHIVE = "CINIC-10.tar.gz"
# the release's md5 (687,544,992 bytes) as public CINIC-10 loaders pin it; the publisher's page states none
MD5 = "6ee4d0c996905fe93221de577967a372"
# CIFAR-10's classes in CIFAR-10's label order: CINIC-10's class folders, so a label means the same in both
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")   # `valid`, the release's third split, is not read
# <split>/<class>/<synset>_<number>.png names an ImageNet-derived image; CIFAR-10's are cifar10-<split>-<index>.png
IMAGENET_IMAGE = re.compile(r"(?:\./)?(?P<split>[a-z]+)/(?P<cls>[a-z]+)/n\d+_\d+\.png")
SIDE = 32


def download(root: Path) -> Path:
    """The official archive in `root`, downloaded when it is missing or its md5 differs (as torchvision's datasets
    do); one line naming the dataset and `root` when that fails."""
    from torchvision.datasets.utils import calculate_md5, download_url

    path = root / ARCHIVE
    try:
        download_url(URL, str(root), ARCHIVE, MD5)
    except (OSError, RuntimeError) as e:  # no network, or bytes that are not the release's
        got = f"; the file there has md5 {calculate_md5(path)}" if path.is_file() else ""
        raise ArtifactError(f"cinic10_imagenet: no archive with the official md5 {MD5} in data_root {root} and its "
                            f"download from {URL} failed ({' '.join(str(e).split())}{got}); on a machine without "
                            f"network, place {ARCHIVE} there by hand") from None
    return path


def imagenet_images(archive: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split (train, test), the archive's ImageNet-derived images (uint8 NHWC, in file-name order) and their
    labels (the index of their class folder in CLASSES); read from the archive, nothing extracted."""
    from PIL import Image

    found: dict[str, list[tuple[str, np.ndarray, int]]] = {split: [] for split in SPLITS}
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            m = IMAGENET_IMAGE.fullmatch(member.name)
            if not (m and member.isfile() and m["split"] in found):
                continue
            if m["cls"] not in CLASSES:
                raise ArtifactError(f"{archive}: {member.name} lies in class folder '{m['cls']}', not one of "
                                    f"CINIC-10's ({', '.join(CLASSES)})")
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                if image.size != (SIDE, SIDE):
                    raise ArtifactError(f"{archive}: {member.name} is {image.size[0]}x{image.size[1]} pixels, "
                                        f"expected {SIDE}x{SIDE}")
                found[m["split"]].append((member.name, np.asarray(image.convert("RGB")), CLASSES.index(m["cls"])))
    out = {}
    for split, images in found.items():
        if not images:
            raise ArtifactError(f"{archive}: no ImageNet-derived image (<class>/n<synset>_<number>.png) under {split}/")
        images.sort(key=lambda item: item[0])
        out[split] = (np.stack([x for _, x, _ in images]), np.array([y for _, _, y in images], dtype=np.int64))
    return out
