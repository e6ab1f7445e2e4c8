"""Artifacts are written atomically, readable as the umask says, byte-identical for identical contents and
strict JSON; a killed write leaves nothing its rerun does not clean up."""
import json
import os
import stat

import numpy as np
import pytest
import torch

from pipeline_lib.artifacts import atomic_path, save_json, save_npz
from pipeline_lib.models import build, save_weights


def test_a_failed_write_leaves_neither_the_file_nor_a_temp_file(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.npz") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_temp_file_left_by_a_killed_job_is_replaced_by_the_rerun(tmp_path):
    (tmp_path / ".a.npz.tmp").write_bytes(b"left by kill -9")
    save_npz(tmp_path / "a.npz", x=np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_artifacts_are_readable_as_the_umask_says(tmp_path):
    old = os.umask(0o022)
    try:
        save_json(tmp_path / "m.json", {"a": 1})
        save_weights(tmp_path / "m.pt", {"name": "small_cnn", "in_channels": 1, "num_classes": 2},
                     build({"name": "small_cnn", "in_channels": 1, "num_classes": 2}))
    finally:
        os.umask(old)
    for name in ("m.json", "m.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_identical_weights_give_identical_model_files_wherever_they_are_written(tmp_path):
    arch = {"name": "small_cnn", "in_channels": 1, "num_classes": 2}
    torch.manual_seed(0)
    model = build(arch)
    save_weights(tmp_path / "a.pt", arch, model)
    (tmp_path / "elsewhere").mkdir()
    save_weights(tmp_path / "elsewhere/model.pt", arch, model)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "elsewhere/model.pt").read_bytes()


def test_metrics_json_is_strict_with_null_for_a_rate_over_no_images(tmp_path):
    save_json(tmp_path / "m.json", {"asr": float("nan"), "per_class": [0.5, float("nan")], "inf": float("inf")})
    text = (tmp_path / "m.json").read_text()
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert parsed == {"asr": None, "per_class": [0.5, None], "inf": None}
