"""Typed views of the validated config: cross-references checked, figure grids expanded into artifacts."""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Hashable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from . import claims, figure_kinds, plugins
from .artifacts import ArtifactError
from .blocks import BlockError
from .cohorts import Cohort, plan
from .data import SourceInfo, describe
from .layout import CLEAN_AMOUNT, CLEAN_TARGET, Amount, AttackerModel, Poisoned, Victim
from .tables import FILTERING_COLUMNS, TSNE_COLUMNS, victim_columns


VICTIM_KINDS = figure_kinds.names(source="victims")   # figures drawn from trained victims
FILTER_KINDS = figure_kinds.names(source="poisons")   # figures drawn from scored poison sets
GRID_KEYS = ("dataset", "attack", "recipe", "defence", "targets", "rates", "counts", "seeds", "classifier")


class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


# YAML a config may hold: aliases are welcome (config.yaml shares recipe blocks), but never a document that expands
# beyond this many nodes (an alias bomb) nor a file beyond this many bytes
MAX_YAML_NODES = 200_000
MAX_YAML_BYTES = 10_000_000
# deepest nesting of a config file (the presets nest 6 deep): PyYAML composes a document recursively, so a file
# nested thousands deep would end in a RecursionError
MAX_YAML_DEPTH = 100
# longest one-line error: a value echoed in full could be a whole expanded config
MAX_ERROR_CHARS = 300


def _line(node: yaml.Node) -> int:
    """The 1-based line a YAML node starts on."""
    return node.start_mark.line + 1


def _check_expanded_size(root: yaml.Node, where: str) -> None:
    """Count the nodes of a composed YAML document with every alias expanded, without expanding any: refuse a
    recursive alias, and stop as soon as the count passes MAX_YAML_NODES."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise ConfigError(f"{where}, line {_line(node)}: expands to more than {MAX_YAML_NODES} values "
                                  "through its aliases, refused")
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise ConfigError(f"{where}, line {_line(node)}: a recursive alias, refused")
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _check_depth(text: str, where: str) -> None:
    """Refuse a document nested deeper than MAX_YAML_DEPTH, from its parse events (the parser does not recurse)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{where}, line {event.start_mark.line + 1}: nested more than {MAX_YAML_DEPTH} "
                                  "deep, refused")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (merge keys `<<` may be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping, after checking its own keys are distinct."""
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # a list or mapping as a key: the schema refuses it by name
            if key in seen:
                raise ConfigError(f"{self.name}, line {_line(key_node)}: key '{key}' given twice in one block (first "
                                  f"on line {_line(seen[key])}; YAML would silently keep the last)")
            seen[key] = key_node
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping of keys; any problem (unreadable, not UTF-8, a NUL byte, invalid YAML, nested too
    deep, a duplicate key, an alias bomb, empty or not a mapping) raises ConfigError naming the file and line."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_YAML_BYTES} bytes, refused as a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 (byte {raw[e.start]:#04x}); save it as UTF-8") from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise ConfigError(f"{path}, line {line}: holds a NUL byte")
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        _check_depth(text, str(path))
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{path}: empty; a config file is a mapping of top-level keys (datasets, figures, ...)")
        _check_expanded_size(node, str(path))
        data = loader.construct_document(node)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}, line {_line(node)}: a {type(data).__name__}, not the mapping of top-level "
                              "keys (datasets, figures, ...) a config file is")
        return data
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    finally:
        loader.dispose()


Entry = tuple[Hashable, ...]  # a named entry of a config file: (section, name), or (key,) for a top-level non-mapping
Origins = dict[Entry, str]    # the file that defined each entry


def _include_list(data: dict[str, Any], where: str) -> list[str]:
    """The paths a config file's `include` names (removed from it)."""
    paths = data.pop("include", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.strip() for p in paths):
        raise ConfigError(f"{where}: config key 'include': a list of config file paths (relative to the workflow's "
                          "folder), not " + " ".join(repr(paths).split())[:MAX_ERROR_CHARS])
    return paths


def _entries(data: dict[str, Any]) -> list[Entry]:
    """A config file's named entries: each block of a section (claims.<name>, attacks.<name>, ...), or the
    top-level key itself where its value is not a mapping."""
    return [(k, n) for k, v in data.items() if isinstance(v, dict) for n in v] + \
           [(k,) for k, v in data.items() if not isinstance(v, dict)]


def _defined_by(entry: Entry, origin: Origins) -> str | None:
    """The file that defined `entry`, or a block under it, or the top-level key holding it; None if none did."""
    if entry in origin:
        return origin[entry]
    if len(entry) == 2:
        return origin.get(entry[:1])
    return next((f for e, f in origin.items() if e[0] == entry[0]), None)


def _merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` layered over `base`: mappings merge key by key, top's values win, lists and scalars are replaced."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _layers(paths: list[str], root: Path, chain: dict[Path, str], where: str) -> tuple[dict[str, Any], Origins]:
    """The files `paths` names, each over its own includes, merged side by side, and the file that defined each
    entry; `chain` holds the including files (a cycle's names)."""
    base: dict[str, Any] = {}
    origin: Origins = {}
    for name in paths:
        path = (root / name).resolve()
        if path in chain:
            raise ConfigError(f"{where}: config key 'include': a cycle, {' -> '.join([*chain.values(), name])}")
        if not path.is_file():
            raise ConfigError(f"{where}: config key 'include': {name} not found (include paths are relative to the "
                              f"workflow's folder, {root})")
        data = load_yaml(root / name)
        layer, layer_origin = _layers(_include_list(data, name), root, {**chain, path: name}, name)
        layer_origin.update(dict.fromkeys(_entries(data), name))
        for entry, file in layer_origin.items():
            if (other := _defined_by(entry, origin)) not in (None, file):
                raise ConfigError(f"config key '{'.'.join(map(str, entry))}': defined by both {other} and {file} (both "
                                  f"included by {where}); define it in one of them")
        base = _merged(base, _merged(layer, data))
        origin.update(layer_origin)
    return base, origin


def resolve_includes(config: dict[str, Any], root: str | Path, where: str | Path) -> None:
    """Layer the config files that `config`'s top-level `include` lists (paths relative to the workflow's folder
    `root`, each read strictly, each may include others) under `config` (read from `where`), in place: mappings
    merge key by key, the including file's own values (and --config's) win, lists and scalars are replaced. A
    missing file, a cycle, and an entry (claims.<name>, attacks.<name>, a top-level value) that two included files
    both define each raise ConfigError."""
    root, where = Path(root).resolve(), str(where)
    base, _ = _layers(_include_list(config, where), root, {Path(where).resolve(): where}, where)
    resolved = _merged(base, config)
    config.clear()
    config.update(resolved)


def default_results(configfile: str | None) -> str:
    """Where a config whose own file names no `results` folder writes: results/ for config.yaml, results/<file
    stem> for a --configfile; never an included layer's folder, so a config built on a preset never writes into the
    preset's results."""
    if configfile is None:
        return "results"
    return "results/" + (re.sub(r"[^A-Za-z0-9_.-]", "_", Path(configfile).stem).lstrip(".-") or "config")


def read_config(path: str | Path, root: str | Path) -> dict[str, Any]:
    """A config file as the workflow reads it before validation: strictly, its includes layered under it."""
    config = load_yaml(path)
    resolve_includes(config, root, path)
    return config


def check_finite(obj: Any, key: str = "") -> None:
    """Raise naming the key of the first number that is not finite (.nan, .inf): JSON Schema's bounds let it by."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ConfigError(f"config key '{key or '<top level>'}': {obj} is not a finite number")
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        check_finite(v, f"{key}.{k}" if key else str(k))


def schema_error_line(err: Any, overridden: Collection[str] = ()) -> str:
    """One line from a jsonschema ValidationError: the dotted key path and what is wrong; for a value matching
    none of several alternatives, what is wrong under the alternative of its own kind (a list for a list); text
    where another type belongs, under a top-level key `overridden` by --config, says that --config gave it as text."""
    own_kind = [e for e in err.context or () if not (e.validator in ("type", "const", "enum") and not e.relative_path)]
    if own_kind:
        kinds = {e.schema_path[0] for e in err.context if e in own_kind}
        if len(kinds) == 1:
            err = own_kind[0]
    path = ".".join(str(p) for p in err.absolute_path) or "<top level>"
    message = " ".join(err.message.split())
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "... (value shortened)"
    if err.validator == "not" and err.instance == "none":  # the one reserved name (schema: `not: {const: none}`)
        message = "'none' is built in (plain training, no defence: a grid's default); give your block another name"
    if err.validator == "type" and isinstance(err.instance, str) and err.absolute_path[0] in overridden:
        message += (" (--config passes every value inside {...}, and .inf or .nan anywhere, as text: set them in "
                    "a --configfile)")
    return f"config key '{path}': {message}"


def check_method_block(kind: str, where: str, block: dict[str, Any], keys_at: str = "") -> None:
    """Validate one config block against its method's own keys: unknown method, a key of another method, a
    wrong type or bound, or a value its dataclass refuses, each as an error naming the key (the method's keys
    sit at `where` + `keys_at`: a recipe's model options under '.model_options')."""
    try:
        plugins.settings(kind, block)
    except plugins.PluginError as e:
        raise ConfigError(f"config key '{where}.{plugins.METHOD_KEY[kind]}': {e}") from None
    except BlockError as e:
        raise ConfigError(f"config key '{where}{keys_at}{'.' + e.key if e.key else ''}': {e.message}") from None


def attack_method(config: dict[str, Any], attack: str) -> plugins.Attack:
    """The method of a configured attack, with its traits."""
    return plugins.method("attack", config["attacks"][attack]["method"])


def defence_method(config: dict[str, Any], defence: str) -> plugins.Defence:
    """The method of a configured defence ('none': plain training), with its traits."""
    return plugins.method("defence", "none" if defence == "none" else config["defences"][defence]["method"])


def _known(config: dict[str, Any], key: str, section: str, name: str, what: str) -> None:
    """Raise naming `key` unless `name` is defined in config[section]."""
    if name not in config.get(section, {}):
        raise ConfigError(f"config key '{key}': unknown {what} '{name}' "
                          f"(defined in '{section}': {', '.join(config.get(section, {})) or 'none'})")


@cache
def _describe(source: str) -> SourceInfo:
    """A source's SourceInfo, read once per process."""
    return describe(source)


def source_info(config: dict[str, Any], dataset: str) -> SourceInfo:
    """Class count, image shape and (when readable) class sizes of a configured dataset, `train_counts` applied."""
    spec = config["datasets"][dataset]
    try:
        info = _describe(spec["source"])
    except ArtifactError as e:
        raise ConfigError(f"config key 'datasets.{dataset}.source': {e}") from None
    counts = spec.get("train_counts")
    if counts is None:
        return info
    where = f"config key 'datasets.{dataset}.train_counts'"
    if len(counts) != info.num_classes:
        raise ConfigError(f"{where}: {len(counts)} entries for {info.num_classes} classes")
    over = [c for c, n in enumerate(counts) if info.train_counts and n > info.train_counts[c]]
    if over:
        raise ConfigError(f"{where}: asks for {counts[over[0]]} images of class {over[0]}, "
                          f"which has {info.train_counts[over[0]]}")
    return dataclasses.replace(info, train_counts=tuple(counts))


def classes_of(config: dict[str, Any], dataset: str) -> int:
    """Number of classes of a configured dataset."""
    return source_info(config, dataset).num_classes


def min_image_side(model: str, options: dict[str, Any]) -> int:
    """The smallest image side a model of the catalogue accepts with these options (its `min_side` trait)."""
    method, config = plugins.settings("model", {"model": model, **options})
    return method.min_side(config)


def _check_model(config: dict[str, Any], key: str, recipe: str, dataset: str) -> None:
    """The recipe's model must shrink the dataset's images no further than to one pixel."""
    spec = config["recipes"][recipe]
    side = min(source_info(config, dataset).image_shape[:2])
    need = min_image_side(spec["model"], spec.get("model_options", {}))
    if side < need:
        raise ConfigError(f"config key '{key}': recipe '{recipe}' ({spec['model']}) needs images of at least "
                          f"{need}x{need} pixels, dataset '{dataset}' has {side}x{side}")


def _check_amounts(config: dict[str, Any], where: str, grid: dict[str, Any]) -> None:
    """Every target and amount must poison at least one and at most the available images (when sizes are known)."""
    info = source_info(config, grid["dataset"])
    attack = attack_method(config, grid["attack"])
    if info.train_counts is None or attack.trigger == "none":
        return
    relabels = attack.relabels
    settings = plugins.settings("attack", config["attacks"][grid["attack"]])[1] if attack.cross else None
    for t in targets(config, grid):
        pool = sum(info.train_counts) if relabels else info.train_counts[t]
        for token in amounts(grid):
            amount = Amount.parse(token)
            key = f"config key '{where}.{'rates' if amount.rate is not None else 'counts'}'"
            try:
                n = amount.resolve(info.train_counts[t])
            except ValueError:  # a rate too small to poison one image
                n = 0
            if not 1 <= n <= pool:
                what = "training images" if relabels else f"images of class {t}"
                raise ConfigError(f"{key}: {token[1:]} poisons {n} of the {pool} {what} of dataset '{grid['dataset']}'")
            if settings is not None and n + settings.crossed(n) > sum(info.train_counts):
                raise ConfigError(f"{key}: {token[1:]} poisons {n} and modifies {settings.crossed(n)} more of the "
                                  f"{sum(info.train_counts)} training images of dataset '{grid['dataset']}'")


def _check_trigger(config: dict[str, Any], key: str, trigger: str, dataset: str) -> None:
    """A trigger that takes only some image shapes (its dataclass's `check_shape`) takes the dataset's."""
    check = getattr(plugins.settings("trigger", config["triggers"][trigger])[1], "check_shape", None)
    try:
        if check:
            check(source_info(config, dataset).image_shape)
    except ValueError as e:
        raise ConfigError(f"config key '{key}': trigger '{trigger}' does not fit the images of dataset '{dataset}' "
                          f"({config['datasets'][dataset]['source']}): {e}") from None


def _check_partner(config: dict[str, Any], key: str, perturbation: str, dataset: str) -> None:
    """An interpolation must move each class towards another class, of a partner dataset (if named) with the
    perturbed dataset's classes and image size."""
    spec = config["perturbations"][perturbation]
    n = classes_of(config, dataset)
    if partners := spec.get("partner_dataset"):
        where = f"perturbations.{perturbation}.partner_dataset"
        _known(config, where, "datasets", partners, "dataset")
        theirs, ours = source_info(config, partners), source_info(config, dataset)
        if (theirs.num_classes, theirs.image_shape) != (ours.num_classes, ours.image_shape):
            raise ConfigError(f"config key '{where}': dataset '{partners}' has {theirs.num_classes} classes of "
                              f"{'x'.join(map(str, theirs.image_shape))} images, dataset '{dataset}' (used by '{key}') "
                              f"{ours.num_classes} of {'x'.join(map(str, ours.image_shape))}")
    if (spec["method"] in ("gan_interpolation", "pixel_interpolation") and spec.get("partner", "offset") == "offset"
            and spec.get("partner_offset", 1) % n == 0):
        raise ConfigError(f"config key 'perturbations.{perturbation}.partner_offset': {spec.get('partner_offset', 1)} "
                          f"is a multiple of the {n} classes of dataset '{dataset}' (used by '{key}'): every class "
                          "would be interpolated towards itself")


def series(config: dict[str, Any], figure: str) -> list[tuple[str, dict[str, Any]]]:
    """A figure's (label, grid) pairs: each `series` entry over the figure-level grid keys, or that grid alone;
    a figure's `defences` list repeats every series once per defence (same label, its own `defence`; a series of
    the attacker's classifier only once, undefended)."""
    spec = config["figures"][figure]
    base = {k: spec[k] for k in GRID_KEYS if k in spec}
    entries = spec.get("series") or {"": {}}
    out = []
    for label, override in entries.items():
        grid = {k: v for k, v in base.items() if not ({"rates", "counts"} & set(override) and k in ("rates", "counts"))}
        grid = {"defence": "none", "seeds": [0], **grid, **override}
        if "defences" in spec:  # an attacker's own classifier is trained without a defence: its row alone
            out += [(label, {**grid, "defence": d}) for d in spec["defences"]
                    if d == "none" or grid.get("classifier") != "attacker"]
        else:
            out.append((label, grid))
    return out


def _check_grid(config: dict[str, Any], figure: str, label: str, grid: dict[str, Any], needs: tuple[str, ...]) -> None:
    """Every key a figure kind needs is set (in the figure or its series), names something defined and fits the data."""
    where = f"figures.{figure}" + (f".series.{label}" if label else "")
    for key in needs:
        if key not in grid:
            raise ConfigError(f"config key '{where}.{key}': missing (set it on the figure or the series)")
    if ("rates" in grid) == ("counts" in grid):
        raise ConfigError(f"config key '{where}': give exactly one of 'rates' and 'counts'")
    for key, section in (("dataset", "datasets"), ("attack", "attacks"), ("recipe", "recipes")):
        if key in grid:
            _known(config, f"{where}.{key}", section, grid[key], key)
    if grid["defence"] != "none":
        _known(config, f"{where}.defence", "defences", grid["defence"], "defence")
    n = classes_of(config, grid["dataset"])
    bad = [t for t in grid["targets"] if t >= n] if grid["targets"] != "all" else []
    if bad:
        raise ConfigError(f"config key '{where}.targets': class {bad[0]} does not exist "
                          f"(dataset '{grid['dataset']}' has classes 0..{n - 1})")
    attack = config["attacks"][grid["attack"]]
    if attack.get("trigger"):
        _check_trigger(config, f"{where}.attack", attack["trigger"], grid["dataset"])
    if attack.get("perturbation"):
        _check_partner(config, f"{where}.attack", attack["perturbation"], grid["dataset"])
    if "recipe" in grid:
        _check_model(config, f"{where}.recipe", grid["recipe"], grid["dataset"])
    if attack_method(config, grid["attack"]).trigger == "trained":
        _check_model(config, f"attacks.{grid['attack']}.recipe", attack["recipe"], grid["dataset"])
    _check_amounts(config, where, grid)


def _check_attacker_series(config: dict[str, Any], fig: str, label: str, grid: dict[str, Any], kind: str) -> None:
    """A series reading an attack's own classifier names an attack that trains one, no defence, in a figure drawn
    from the victims' metrics alone."""
    where = f"figures.{fig}" + (f".series.{label}" if label else "")
    if attack_method(config, grid["attack"]).trigger != "trained":
        raise ConfigError(f"config key '{where}.classifier': attack '{grid['attack']}' trains no classifier of its "
                          "own (an input-aware attack does)")
    if grid["defence"] != "none":
        raise ConfigError(f"config key '{where}.classifier': the attacker's classifier is trained without a defence, "
                          f"not under '{grid['defence']}'")
    if kind in ("tsne", "loss_trace"):
        raise ConfigError(f"config key '{where}.classifier': a '{kind}' figure needs a victim's poisoned training "
                          "set, which the attacker's classifier does not have")


def _check_examples(config: dict[str, Any], fig: str, spec: dict[str, Any]) -> None:
    """An examples figure's classes, label and rows exist in its dataset; its columns name defined things."""
    where = f"figures.{fig}"
    _known(config, f"{where}.dataset", "datasets", spec["dataset"], "dataset")
    info = source_info(config, spec["dataset"])
    for key, values in (("classes", [] if spec["classes"] == "all" else spec["classes"]),
                        ("shown_label", [spec.get("shown_label", 0)])):
        if max(values, default=0) >= info.num_classes:
            raise ConfigError(f"config key '{where}.{key}': class {max(values)} does not exist "
                              f"(dataset '{spec['dataset']}' has classes 0..{info.num_classes - 1})")
    shown = example_classes(config, fig)
    per_class = figure_option(config, fig, "per_class")
    if info.train_counts and per_class > min(info.train_counts[c] for c in shown):
        c = min(shown, key=lambda c: info.train_counts[c])
        raise ConfigError(f"config key '{where}.per_class': {per_class} rows per class, but class {c} of dataset "
                          f"'{spec['dataset']}' has {info.train_counts[c]} training images")
    for col, c in spec["columns"].items():
        for key, section in (("perturbation", "perturbations"), ("trigger", "triggers")):
            if key in c:
                _known(config, f"{where}.columns.{col}.{key}", section, c[key], key)
        if "trigger" in c:
            _check_trigger(config, f"{where}.columns.{col}.trigger", c["trigger"], spec["dataset"])
        if "perturbation" in c:
            _check_partner(config, f"{where}.columns.{col}", c["perturbation"], spec["dataset"])


def check_references(config: dict[str, Any]) -> None:
    """Every name the config uses is defined, every figure key is read by its kind, and every class, amount,
    image size and count fits the data (read from npz archives' labels and headers)."""
    for name, r in config.get("recipes", {}).items():
        check_method_block("model", f"recipes.{name}", {"model": r["model"], **r.get("model_options", {})},
                           keys_at=".model_options")
    for name, s in config.get("surrogates", {}).items():
        _known(config, f"surrogates.{name}.dataset", "datasets", s["dataset"], "dataset")
        _known(config, f"surrogates.{name}.recipe", "recipes", s["recipe"], "recipe")
        _check_model(config, f"surrogates.{name}.recipe", s["recipe"], s["dataset"])
    for name, p in config.get("perturbations", {}).items():
        for key, section in (("surrogate", "surrogates"), ("gan", "gans")):
            if key in p:
                _known(config, f"perturbations.{name}.{key}", section, p[key], key)
        need = {"pgd": "surrogate", "gan_interpolation": "gan"}.get(p["method"])
        if need and need not in p:
            raise ConfigError(f"config key 'perturbations.{name}.{need}': method '{p['method']}' needs a {need}")
    for name, t in config["triggers"].items():
        check_method_block("trigger", f"triggers.{name}", t)
    for name, d in config.get("defences", {}).items():
        check_method_block("defence", f"defences.{name}", d)
        if d.get("pretrained"):
            _known(config, f"defences.{name}.pretrained", "surrogates", d["pretrained"], "surrogate")
    for name, attack in config["attacks"].items():
        check_method_block("attack", f"attacks.{name}", attack)
        for key, section in (("trigger", "triggers"), ("recipe", "recipes"), ("perturbation", "perturbations")):
            if attack.get(key):
                _known(config, f"attacks.{name}.{key}", section, attack[key], key)
        patterns = attack_method(config, name).patterns
        if patterns and (pattern := config["triggers"][attack["trigger"]]["pattern"]) not in patterns:
            raise ConfigError(f"config key 'attacks.{name}.trigger': attack '{attack['method']}' takes a trigger of "
                              f"pattern {' or '.join(patterns)}, not '{pattern}'")
    for fig, spec in config["figures"].items():
        kind = spec["kind"]
        for key in figure_kinds.unread_keys(kind):
            if key in spec:
                raise ConfigError(f"config key 'figures.{fig}.{key}': not used by a '{kind}' figure")
        for key in figure_kinds.KINDS[kind].required:
            if key not in spec:
                raise ConfigError(f"config key 'figures.{fig}.{key}': missing (a '{kind}' figure needs it)")
        if kind == "examples":
            _check_examples(config, fig, spec)
            continue
        if kind in FILTER_KINDS:
            _known(config, f"figures.{fig}.filter", "surrogates", spec["filter"], "surrogate")
        if isinstance(spec["metric"], list) and not figure_kinds.KINDS[kind].metric_list:
            raise ConfigError(f"config key 'figures.{fig}.metric': a '{kind}' figure draws one metric, not a list")
        if "der" in (spec["metric"] if isinstance(spec["metric"], list) else [spec["metric"]]):
            _check_undefended_twins(fig, series(config, fig))
        needs = ("dataset", "attack", "targets") + (("recipe",) if kind in VICTIM_KINDS else ())
        for label, grid in series(config, fig):
            _check_grid(config, fig, label, grid, needs)
            if grid.get("classifier") == "attacker":
                _check_attacker_series(config, fig, label, grid, kind)
            if kind == "loss_trace" and not config["recipes"][grid["recipe"]].get("trace_per_epoch"):
                raise ConfigError(f"config key 'recipes.{grid['recipe']}.trace_per_epoch': figure '{fig}' plots "
                                  "training losses, so its recipe must trace them (set it to 1 or more)")
        _check_display_names(config, fig)
    check_claims(config)


def _check_display_names(config: dict[str, Any], fig: str) -> None:
    """A figure's series, attacks and defences print distinct names: a legend or a table could not tell two apart."""
    names = figure_kinds.figure_labels(config, fig)
    for kind in ("series", "attack", "defence"):
        seen: dict[str, str] = {}
        for key, label in names[kind].items():
            if label in seen:
                where = f"figures.{fig}.series.{key}" if kind == "series" else f"{kind}s.{key}"
                raise ConfigError(f"config key '{where}.label': {kind} '{key}' prints as '{label}' in figure '{fig}', "
                                  f"as {kind} '{seen[label]}' does; give one of them another label")
            seen[label] = key


def _check_undefended_twins(fig: str, grids: list[tuple[str, dict[str, Any]]]) -> None:
    """A figure drawing DER has a defence, and in every series with a defence that series undefended (DER's twin)."""
    undefended = {label for label, g in grids if g["defence"] == "none"}
    if all(g["defence"] == "none" for _, g in grids):
        raise ConfigError(f"config key 'figures.{fig}.metric': DER rates a defence against no defence, and the "
                          "figure has none (list some under `defences`)")
    for label, g in grids:
        if label not in undefended:
            raise ConfigError(f"config key 'figures.{fig}.metric': DER rates each defence against no defence, so "
                              f"series '{label or fig}' needs the defence 'none' too")


def _figure_columns(config: dict[str, Any], fig: str) -> list[str]:
    """The columns of a figure's table: its own (t-SNE, filtering) or the victim tables' (with every measure)."""
    own = {"tsne": TSNE_COLUMNS, "filtering": FILTERING_COLUMNS}
    return own.get(config["figures"][fig]["kind"]) or victim_columns()


def _planned_rows(config: dict[str, Any], fig: str) -> list[dict[str, Any]]:
    """The rows a figure's table will have, with the columns planning knows: the grid's names, target, amount and
    seed; for victim tables also the methods, model, rate and (where the class sizes are known) poison count."""
    kind = config["figures"][fig]["kind"]
    if kind in FILTER_KINDS:
        return [{"series": label, "dataset": p.dataset, "attack": p.attack, "target": p.target, "amount": p.amount,
                 "seed": p.seed} for label, p in figure_poison_sets(config, fig)]
    rows = []
    for label, v in figure_rows(config, fig):
        row = {"series": label, "dataset": v.dataset, "attack": v.attack, "recipe": v.recipe, "defence": v.defence,
               "target": v.target, "amount": v.amount, "seed": v.seed}
        if kind != "tsne":
            attack = config["attacks"][v.attack]
            defence = {"method": "none"} if v.defence == "none" else config["defences"][v.defence]
            amount, sizes = Amount.parse(v.amount), source_info(config, v.dataset).train_counts
            row |= {"method": attack["method"], "defence_method": defence["method"], "rate": amount.rate,
                    "trigger": config["triggers"][attack["trigger"]]["pattern"] if attack.get("trigger")
                    else attack["method"]}
            trained = config["surrogates"][defence["pretrained"]]["recipe"] if defence.get("pretrained") else v.recipe
            row["model"] = config["recipes"][trained]["model"]  # a pretrained model keeps its surrogate's architecture
            if (amount.count is not None or sizes) and not isinstance(v, AttackerModel):  # it has no poison set
                row["count"] = amount.count if amount.count is not None else amount.resolve(sizes[v.target])
        rows.append(row)
    return rows


def _same(a: Any, b: Any) -> bool:
    """A claim's selector value and a table value are equal as the table read back compares them (text to text)."""
    return isinstance(a, str) == isinstance(b, str) and a == b


def _shown(value: Any) -> str:
    """A table value as a message quotes it."""
    return f"'{value}'" if isinstance(value, str) else str(value)


def _levels(rows: list[dict[str, Any]], column: str) -> list[Any] | None:
    """The distinct values of a column among planned rows, in order (empty cells left out; None when planning
    does not know the column)."""
    if any(column not in r for r in rows):
        return None
    return [v for v in dict.fromkeys(r[column] for r in rows) if v is not None]


def _selected_rows(config: dict[str, Any], key: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The planned rows a measure selects: every `series` and `where` value it names must be one its figure plans,
    and together they must select a row (columns planning cannot know, as a metric's, select nothing here)."""
    fig = spec["figure"]
    rows = _planned_rows(config, fig)
    selectors = [("series", "series", spec["series"])] if spec.get("series") is not None else []
    selectors += [(f"where.{column}", column, value) for column, value in spec.get("where", {}).items()]
    picked = rows
    for sub, column, value in selectors:
        planned, wanted = _levels(rows, column), value if isinstance(value, list) else [value]
        if planned is None:
            continue
        for w in wanted:
            if not any(_same(w, p) for p in planned):
                shown = ", ".join(map(_shown, planned[:12])) + (", ..." if len(planned) > 12 else "")
                raise ConfigError(f"config key '{key}.{sub}': figure '{fig}' has no {column} {_shown(w)} (it has: "
                                  f"{shown})")
        picked = [r for r in picked if any(_same(w, r[column]) for w in wanted)]
        if not picked:
            raise ConfigError(f"config key '{key}.{sub}': figure '{fig}' has no row with {column} "
                              f"{_shown(value)} among those the measure's other selectors pick")
    return picked


def _check_measure(config: dict[str, Any], key: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A claim's measure reads a figure that has a table, and columns and rows of that table; its planned rows."""
    fig = spec["figure"]
    _known(config, f"{key}.figure", "figures", fig, "figure")
    if config["figures"][fig]["kind"] not in figure_kinds.tabled():
        raise ConfigError(f"config key '{key}.figure': figure '{fig}' is a '{config['figures'][fig]['kind']}' "
                          "figure, which has no metric table")
    columns = _figure_columns(config, fig)
    if spec["metric"] not in columns:
        raise ConfigError(f"config key '{key}.metric': '{spec['metric']}' is not a column of the table of figure "
                          f"'{fig}'")
    for column in spec.get("where", {}):
        if column not in columns:
            raise ConfigError(f"config key '{key}.where.{column}': not a column of the table of figure '{fig}'")
    if spec.get("aggregate") == "count_above" and "threshold" not in spec:
        raise ConfigError(f"config key '{key}.threshold': aggregate count_above needs a threshold")
    rows = _selected_rows(config, key, spec)
    if spec["metric"] in plugins.measures() and "defence_method" in rows[0] and not any(
            spec["metric"] in plugins.method("defence", r["defence_method"]).measures for r in rows):
        raise ConfigError(f"config key '{key}.metric': no defence of the rows it reads measures {spec['metric']} "
                          f"(defences: {', '.join(dict.fromkeys(r['defence'] for r in rows))})")
    return rows


def check_claims(config: dict[str, Any]) -> None:
    """Every claim measures figures that exist and have tables, with their own columns, and rows its series and
    `where` values select; margins and counts go with orderings, per-column orderings find each column value on
    both sides, trends run along a column with two or more values; no figure takes the scorecard's name."""
    if config.get("claims") and "scorecard" in config["figures"]:
        raise ConfigError("config key 'figures.scorecard': the name is the scorecard figure's; rename the figure")
    for name, claim in config.get("claims", {}).items():
        rows = {part: _check_measure(config, f"claims.{name}.{part}", claim[part])
                for part in ("measured", "above", "below", "close_to") if part in claim}
        _check_reported(name, claim)
        ordering = "above" in claim or "below" in claim
        for key in ("by_at_least", "per"):
            if key in claim and not ordering:
                raise ConfigError(f"config key 'claims.{name}.{key}': only an ordering (above / below) takes it")
        for key in ("per", "along"):
            if key in claim and claim[key] not in _figure_columns(config, claim["measured"]["figure"]):
                raise ConfigError(f"config key 'claims.{name}.{key}': '{claim[key]}' is not a column of the table "
                                  f"of figure '{claim['measured']['figure']}'")
        if "per" in claim:
            side = "above" if "above" in claim else "below"
            mine, theirs = _levels(rows["measured"], claim["per"]), _levels(rows[side], claim["per"])
            missing = [v for v in mine or [] if theirs is not None and not any(_same(v, t) for t in theirs)]
            if missing:
                raise ConfigError(f"config key 'claims.{name}.{side}': selects no row of {claim['per']} "
                                  f"{_shown(missing[0])}, which the measured rows have")
        levels = _levels(rows["measured"], claim["along"]) if "along" in claim else None
        if levels is not None and len(levels) < 2:
            raise ConfigError(f"config key 'claims.{name}.along': a trend needs two or more {claim['along']} values, "
                              f"the measured rows have {len(levels)}")


def _check_reported(name: str, claim: dict[str, Any]) -> None:
    """A reported number lies on its metric's scale (a rate in 0..1, a positive loss), a rate of 0 or 1 with the
    `precision` the seed printed it at (the factor of claims.window cannot widen an odds of 0 or infinity)."""
    if not claims.judged_by_window(claim):
        return
    metric, value = claim["measured"]["metric"], claim["reported"]
    if metric in claims.SIGNED:
        raise ConfigError(f"config key 'claims.{name}.reported': {metric} runs from -1 to 1 and has no odds; "
                          "judge it with at_least / at_most instead")
    if claims.scale(metric) == "ratio" and value <= 0:
        raise ConfigError(f"config key 'claims.{name}.reported': {value:g} is not a positive loss")
    if claims.scale(metric) == "odds" and not 0 <= value <= 1:
        raise ConfigError(f"config key 'claims.{name}.reported': {value:g} is not a rate in 0..1 (write 92% as 0.92)")
    if value in (0, 1) and claims.scale(metric) == "odds" and "precision" not in claim:
        raise ConfigError(f"config key 'claims.{name}.precision': a reported rate of {value:g} needs the resolution "
                          "the seed printed it at (0.01 for '0%')")


def claim_figures(config: dict[str, Any]) -> list[str]:
    """The figures whose tables the claims read, in config order."""
    used = {m["figure"] for c in config.get("claims", {}).values()
            for m in (c["measured"], c.get("above"), c.get("below"), c.get("close_to")) if m}
    return [f for f in config["figures"] if f in used]


def figure_option(config: dict[str, Any], figure: str, key: str) -> Any:
    """A figure key, or its kind's default for it."""
    spec = config["figures"][figure]
    return spec[key] if key in spec else figure_kinds.KINDS[spec["kind"]].keys[key]


def amounts(spec: dict[str, Any]) -> list[str]:
    """A grid's poisoning amounts as path tokens."""
    if "rates" in spec:
        return [Amount(rate=float(r)).token for r in spec["rates"]]
    return [Amount(count=int(c)).token for c in spec["counts"]]


def targets(config: dict[str, Any], spec: dict[str, Any]) -> list[int]:
    """A grid's target classes, 'all' expanded."""
    if spec["targets"] == "all":
        return list(range(classes_of(config, spec["dataset"])))
    return list(spec["targets"])


def _figure(config: dict[str, Any], figure: str) -> dict[str, Any]:
    """A figure's spec, or an error listing the defined figures."""
    if figure not in config["figures"]:
        raise ConfigError(f"no figure '{figure}' in the config (defined: {', '.join(config['figures'])})")
    return config["figures"][figure]


def figure_rows(config: dict[str, Any], figure: str) -> list[tuple[str, Victim]]:
    """(series label, victim) for every victim a figure needs."""
    if _figure(config, figure)["kind"] not in VICTIM_KINDS:
        return []
    rows = []
    for label, g in series(config, figure):
        if g.get("classifier") == "attacker":  # the input-aware attack's own classifier: one per target and seed
            recipe = config["attacks"][g["attack"]]["recipe"]
            rows += [(label, AttackerModel(g["dataset"], g["attack"], recipe, "none", t, CLEAN_AMOUNT, s))
                     for t in targets(config, g) for s in g["seeds"]]
        elif attack_method(config, g["attack"]).trigger == "none":  # the clean victim: one a seed, any target, amount
            rows += [(label, Victim(g["dataset"], g["attack"], g["recipe"], g["defence"], CLEAN_TARGET, CLEAN_AMOUNT,
                                    s)) for s in g["seeds"]]
        else:
            rows += [(label, Victim(g["dataset"], g["attack"], g["recipe"], g["defence"], t, a, s))
                     for t in targets(config, g) for a in amounts(g) for s in g["seeds"]]
    return rows


def figure_victims(config: dict[str, Any], figure: str) -> list[Victim]:
    """Every victim a figure needs, each once."""
    return list(dict.fromkeys(v for _, v in figure_rows(config, figure)))


def trained_victims(config: dict[str, Any]) -> dict[Victim, frozenset[str]]:
    """Every victim the figures need and every undefended victim the sanitisers read, with the figures needing it."""
    needs: dict[Victim, set[str]] = {}
    for f in config["figures"]:
        for v in figure_victims(config, f):
            if isinstance(v, AttackerModel):  # trained by its attack's own job
                continue
            needs.setdefault(v, set()).add(f)
            if defence_method(config, v.defence).needs_base:
                needs.setdefault(v.undefended(), set()).add(f)
    return {v: frozenset(figures) for v, figures in needs.items()}


def other_datasets(config: dict[str, Any], victim: Victim) -> frozenset[str]:
    """The datasets beside the victim's own that its poison set reads: its perturbation's surrogate's and partners'."""
    perturbation = config["perturbations"].get(config["attacks"][victim.attack].get("perturbation"), {})
    surrogate = config["surrogates"].get(perturbation.get("surrogate"), {})
    return frozenset({surrogate.get("dataset"), perturbation.get("partner_dataset")} - {None, victim.dataset})


def cohort_plan(config: dict[str, Any]) -> dict[Victim, Cohort]:
    """Each trained victim's cohort under the config's `cohort_size` and `cohort_by_figure`; victims whose poison
    sets read other datasets (a download such as CINIC-10) apart, so a machine without one trains the rest."""
    victims = trained_victims(config)
    apart = {v: (figures if config["cohort_by_figure"] else None, other_datasets(config, v))
             for v, figures in victims.items()}
    return plan(victims, config["cohort_size"], apart)


def figure_poison_sets(config: dict[str, Any], figure: str) -> list[tuple[str, Poisoned]]:
    """(series label, poisoned set) for every poisoned training set a filtering figure scores."""
    if _figure(config, figure)["kind"] not in FILTER_KINDS:
        return []
    return [(label, Poisoned(g["dataset"], g["attack"], t, a, s)) for label, g in series(config, figure)
            for t in targets(config, g) for a in amounts(g) for s in g["seeds"]]


def figure_settings(config: dict[str, Any], figure: str) -> list[str]:
    """One 'label: key value; ...' line per series (or column) of a figure, for its report caption."""
    spec = _figure(config, figure)

    def line(label: str, pairs: dict[str, Any]) -> str:
        text = "; ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in pairs.items())
        text = text or "the training image unchanged"
        return f"{label}: {text}" if label else text

    if spec["kind"] == "examples":
        head = line("", {"dataset": spec["dataset"], "classes": spec["classes"]})
        return [head] + [line(label, column) for label, column in spec["columns"].items()]
    keys = GRID_KEYS + (("filter",) if spec["kind"] in FILTER_KINDS else ())
    return [line(label, {k: g[k] for k in keys if k in g} | ({"filter": spec["filter"]} if "filter" in keys else {}))
            for label, g in series(config, figure)]


def example_classes(config: dict[str, Any], figure: str) -> list[int]:
    """The classes an examples figure draws its images from."""
    spec = _figure(config, figure)
    return targets(config, {"dataset": spec["dataset"], "targets": spec["classes"]})
