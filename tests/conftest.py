"""Shared fixtures: the repository root and the real-data folder beside it."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has none beside it."""
    if not (SHARED_DATA / "mnist_subset.npz").is_file():
        pytest.skip(f"real data subsets not found in {SHARED_DATA}")
    return SHARED_DATA


def raw_config(path: str) -> dict:
    """A config file as the workflow reads it before validation: the files its `include` lists layered under it."""
    from pipeline_lib.config import read_config

    return read_config(ROOT / path, ROOT)


def load_config(path: str) -> dict:
    """A config file as the workflow sees it: includes layered, schema-validated, defaults filled in."""
    return load_config_dict(raw_config(path))


def load_config_dict(cfg: dict) -> dict:
    """A config as the workflow sees it: schema-validated, defaults filled in (in place)."""
    from snakemake.utils import validate

    validate(cfg, str(ROOT / "workflow/schemas/config.schema.yaml"))
    return cfg
