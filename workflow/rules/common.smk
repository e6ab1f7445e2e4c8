# Config validation, wildcard constraints and the input functions shared by every stage.

import re
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # code versions hash this checkout's library

from pipeline_lib.config import ConfigError, check_references, figure_victims, schema_error_line
from pipeline_lib.data import local_path
from pipeline_lib.provenance import code_version
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def validated(cfg):
    """The config with schema defaults filled in, or a one-line error naming the bad key."""
    try:
        validate(cfg, "../schemas/config.schema.yaml")
        check_references(cfg)
    except WorkflowError as e:
        cause = e.__context__  # snakemake wraps the jsonschema ValidationError
        detail = schema_error_line(cause) if hasattr(cause, "absolute_path") else str(e)
        raise WorkflowError(f"invalid config: {detail}") from None
    except ConfigError as e:
        raise WorkflowError(f"invalid config: {e}") from None
    return cfg


config = validated(config)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    attack=r"[A-Za-z0-9_]+",
    recipe=r"[A-Za-z0-9_]+",
    defence=r"[A-Za-z0-9_]+",
    figure="|".join(re.escape(f) for f in config["figures"]),
    target=r"\d+",
    amount=r"p\d*\.?\d+(e-?\d+)?|n\d+",
    seed=r"\d+",


def canonical(obj):
    """Dicts with sorted keys, recursively: params compare by text, so key order must not matter."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    return obj


def dataset_source(w):
    """The registry name or npz:<path> behind a dataset wildcard."""
    return config["datasets"][w.dataset]["source"]


def local_dataset_file(w):
    """The local archive a dataset is read from, so editing it reruns preparation."""
    path = local_path(dataset_source(w))
    return [str(path)] if path else []


def attack_trigger(w):
    """The trigger block of the attack wildcard."""
    return canonical(config["triggers"][config["attacks"][w.attack]["trigger"]])


def victim_metrics(w):
    """Every metrics.json one figure needs."""
    return [str(v.path / "metrics.json") for v in figure_victims(config, w.figure)]


def all_victim_metrics(w):
    """Every metrics.json of every figure, each once."""
    return sorted({str(v.path / "metrics.json") for f in config["figures"] for v in figure_victims(config, f)})
