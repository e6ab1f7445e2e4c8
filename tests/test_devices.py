"""Concurrent jobs on one machine lease different GPUs; SLURM's allocation is trusted as given."""
from pipeline_lib import devices


def test_concurrent_leases_get_different_devices(tmp_path):
    with devices.lease_gpu(2, tmp_path) as a, devices.lease_gpu(2, tmp_path) as b:
        assert {a, b} == {0, 1}
    with devices.lease_gpu(2, tmp_path) as c:
        assert c == 0  # released on exit


def test_each_slurm_allocation_leases_only_among_its_own_gpus(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "LOCK_DIR", tmp_path)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    local = devices.lease_dir()
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    first = devices.lease_dir()
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    second = devices.lease_dir()
    assert len({local, first, second}) == 3
    # two jobs on one node, each given one GPU that it sees as index 0, do not wait on each other
    with devices.lease_gpu(1, first) as a, devices.lease_gpu(1, second) as b:
        assert a == b == 0
