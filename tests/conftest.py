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


def load_config(path: str) -> dict:
    """A config file as the workflow sees it: schema-validated, defaults filled in."""
    import yaml
    from snakemake.utils import validate

    cfg = yaml.safe_load((ROOT / path).read_text())
    validate(cfg, str(ROOT / "workflow/schemas/config.schema.yaml"))
    return cfg
