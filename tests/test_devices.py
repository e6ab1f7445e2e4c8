"""GPU leases: keyed by the GPU's identity, never its index, a place per job (or several where allowed), the leased
GPU made current; a job given a GPU that finds none fails in one line unless a CPU fallback is asked for."""
import types

import pytest
import torch

from pipeline_lib import devices


def test_concurrent_leases_get_different_devices(tmp_path):
    with devices.lease_gpu(["GPU-a", "GPU-b"], tmp_path) as a, devices.lease_gpu(["GPU-a", "GPU-b"], tmp_path) as b:
        assert {a, b} == {0, 1}
    with devices.lease_gpu(["GPU-a", "GPU-b"], tmp_path) as c:
        assert c == 0  # released on exit


def test_leases_follow_the_gpus_identity_not_its_index(tmp_path):
    # two SLURM steps on one node, each given one GPU that it sees as index 0, do not wait on each other
    with devices.lease_gpu(["GPU-a"], tmp_path) as a, devices.lease_gpu(["GPU-b"], tmp_path) as b:
        assert a == b == 0
    # two jobs that see one GPU under different indices (CUDA_VISIBLE_DEVICES=1,0 and 0,1) never share it
    with devices.lease_gpu(["GPU-b", "GPU-a"], tmp_path) as first:
        assert first == 0
        with devices.lease_gpu(["GPU-a", "GPU-b"], tmp_path) as second:
            assert second == 0  # GPU-a: GPU-b is held


def test_jobs_share_a_gpu_only_where_the_setting_allows_it_and_fill_every_gpu_first(tmp_path):
    gpus = ["GPU-a", "GPU-b"]
    with devices.lease_gpu(gpus, tmp_path, slots=2) as a, devices.lease_gpu(gpus, tmp_path, slots=2) as b, \
            devices.lease_gpu(gpus, tmp_path, slots=2) as c, devices.lease_gpu(gpus, tmp_path, slots=2) as d:
        assert [a, b, c, d] == [0, 1, 0, 1]
        with pytest.raises(devices.LockError, match="no GPU came free"):
            with devices.lease_gpu(gpus, tmp_path, slots=2, poll_seconds=0.01, timeout=0.02):
                pass


def test_the_jobs_per_gpu_setting_is_a_whole_number_named_when_wrong(monkeypatch):
    monkeypatch.setenv("PIPELINE_GPU_JOBS_PER_DEVICE", "3")
    assert devices.jobs_per_gpu() == 3
    for bad in ("0", "two", "1.5"):
        monkeypatch.setenv("PIPELINE_GPU_JOBS_PER_DEVICE", bad)
        with pytest.raises(devices.DeviceError, match=f"PIPELINE_GPU_JOBS_PER_DEVICE='{bad}': must be a whole"):
            devices.jobs_per_gpu()


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine whose torch sees no CUDA, with no GPU granted to the job."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", "PIPELINE_GPU_REQUIRE",
                "PIPELINE_GPU_FALLBACK"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_a_job_given_no_gpu_trains_on_the_cpu_without_a_word(no_cuda, capsys):
    with devices.acquire() as device:
        assert device == torch.device("cpu")
    no_cuda.setenv("CUDA_VISIBLE_DEVICES", "")  # hidden on purpose
    with devices.acquire() as device:
        assert device == torch.device("cpu")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("var, value", [("SLURM_JOB_GPUS", "0"), ("SLURM_STEP_GPUS", "2"),
                                        ("CUDA_VISIBLE_DEVICES", "0,1"), ("PIPELINE_GPU_REQUIRE", "1")])
def test_a_job_given_a_gpu_that_finds_none_fails_in_one_line_or_falls_back_loudly(no_cuda, capsys, var, value):
    no_cuda.setenv(var, value)
    with pytest.raises(devices.DeviceError, match=f"given a GPU \\({var}={value}\\) but .*PIPELINE_GPU_FALLBACK=cpu"):
        with devices.acquire():
            pass
    no_cuda.setenv("PIPELINE_GPU_FALLBACK", "cpu")
    with devices.acquire() as device:
        assert device == torch.device("cpu")
    assert "WARNING: this job was given a GPU" in capsys.readouterr().err
    no_cuda.setenv("PIPELINE_GPU_FALLBACK", "yes")
    with pytest.raises(devices.DeviceError, match="PIPELINE_GPU_FALLBACK='yes': must be one of none, cpu"):
        with devices.acquire():
            pass


def test_the_leased_gpu_is_made_current_and_named_by_its_uuid(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    props = {0: "GPU-1111", 1: "GPU-2222"}
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=props[i]))
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    with devices.lease_gpu(["GPU-1111"], tmp_path):  # another job holds the first GPU
        with devices.acquire() as device:
            assert device == torch.device("cuda", 1) and current == [device]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-GPU-1111.0.lock", "gpu-GPU-2222.0.lock"]
