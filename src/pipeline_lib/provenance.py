"""Code versions for Snakemake params: a rule reruns when the library code it runs changes."""
from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent


@cache
def _local_imports(module: str) -> frozenset[str]:
    """Modules of this package imported (relatively) by `module`."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
    return frozenset(found)


def closure(*modules: str) -> list[str]:
    """The modules named plus everything of this package they import, transitively, sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m not in seen:
            if not (PACKAGE_DIR / f"{m}.py").is_file():
                raise ValueError(f"pipeline_lib has no module '{m}'")
            seen.add(m)
            todo.extend(_local_imports(m))
    return sorted(seen)


def code_version(*modules: str) -> str:
    """A short hash of the source of the given modules and their in-package imports."""
    h = hashlib.sha256()
    for m in closure(*modules):
        h.update(m.encode() + b"\0" + (PACKAGE_DIR / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]
