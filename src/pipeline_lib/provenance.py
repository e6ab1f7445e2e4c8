"""Code versions for Snakemake params: a rule reruns when the library code it runs changes."""
from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
PACKAGE = PACKAGE_DIR.name


def _file(module: str) -> Path | None:
    """The source file of an in-package module ('victims', 'defences.abl', 'defences'), if there is one."""
    base = PACKAGE_DIR.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _local_imports(module: str) -> frozenset[str]:
    """Modules of this package that `module` imports, anywhere in its code (imports inside functions count, those
    under `if TYPE_CHECKING:` do not)."""
    path = _file(module)
    return _imports_of(path, module if path.name == "__init__.py" else module.rpartition(".")[0])


def _imports_of(path: Path, package: str | None) -> frozenset[str]:
    """The in-package modules a source file imports; `package` is the file's own package inside this one (None for
    a module outside it, whose relative imports stay outside)."""
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and ast.unparse(block.test)
                   in ("TYPE_CHECKING", "typing.TYPE_CHECKING") for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            if package is None:
                continue
            parts = package.split(".") if package else []
            base = ".".join(parts[:len(parts) - node.level + 1])
            target = ".".join(filter(None, [base, node.module]))
        elif (node.module or "").split(".")[0] == PACKAGE:
            target = node.module.partition(".")[2]
        else:
            continue
        if target and _file(target):
            found.add(target)
        for alias in node.names:  # `from . import x`: x may be a module
            sub = ".".join(filter(None, [target, alias.name]))
            if _file(sub):
                found.add(sub)
    return frozenset(found)


def closure(*modules: str) -> list[str]:
    """The modules named plus everything of this package they import, transitively, sorted."""
    seen: set[str] = set()
    todo = [m.removeprefix(f"{PACKAGE}.") for m in modules]
    while todo:
        m = todo.pop()
        if m not in seen:
            if _file(m) is None:
                raise ValueError(f"{PACKAGE} has no module '{m}'")
            seen.add(m)
            todo.extend(_local_imports(m))
    return sorted(seen)


@cache
def code_version(*modules: str) -> str:
    """A short hash of the source of the given modules and their in-package imports; a module outside the
    package (a config's plug-in) counts with its own file and the package modules it imports."""
    outside = sorted({m for m in modules if m.partition(".")[0] != PACKAGE and _file(m) is None})
    files = {m: _plugin_file(m) for m in outside}
    inside = [m for m in modules if m not in outside] + [i for f in files.values() for i in _imports_of(f, None)]
    h = hashlib.sha256()
    for m in closure(*inside):
        h.update(m.encode() + b"\0" + _file(m).read_bytes())
    for m, path in files.items():
        h.update(m.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _plugin_file(module: str) -> Path:
    """The source file of a plug-in module outside the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ValueError(f"plug-in module '{module}' has no source file")
    return Path(spec.origin)
