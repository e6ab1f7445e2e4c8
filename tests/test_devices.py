"""Concurrent jobs on one machine lease different GPUs; SLURM's allocation is trusted as given."""
from pipeline_lib import devices


def test_concurrent_leases_get_different_devices(tmp_path):
    with devices.lease_gpu(2, tmp_path) as a, devices.lease_gpu(2, tmp_path) as b:
        assert {a, b} == {0, 1}
    with devices.lease_gpu(2, tmp_path) as c:
        assert c == 0  # released on exit


def test_slurm_jobs_are_detected_from_the_environment(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert devices.in_slurm_job()
    monkeypatch.delenv("SLURM_JOB_ID")
    assert not devices.in_slurm_job()
