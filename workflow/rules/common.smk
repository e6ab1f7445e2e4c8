# Config loading and validation, wildcard constraints and the input functions shared by every stage.

import functools
import re
import sys

sys.path.insert(0, f"{workflow.basedir}/src")  # code versions hash this checkout's library

from pipeline_lib.config import (
    ConfigError,
    check_finite,
    check_references,
    claim_figures,
    classes_of,
    cohort_plan,
    default_results,
    example_classes,
    figure_poison_sets,
    figure_rows,
    figure_settings,
    figure_option,
    figure_victims,
    load_yaml,
    resolve_includes,
    schema_error_line,
)
from pipeline_lib import figure_kinds, layout, plugins
from pipeline_lib.claims import FACTOR
from pipeline_lib.cohorts import member_name
from pipeline_lib.data import file_sha256, local_path
from pipeline_lib.layout import Victim, partner_class
from pipeline_lib.provenance import code_version
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def stop(message):
    """End the run before planning with one line on stderr (no traceback)."""
    print(message, file=sys.stderr)
    sys.exit(1)


# A --configfile (a preset under config/) is a complete config that replaces config.yaml; --config key=value
# overrides single keys of either. Snakemake has read a --configfile already (one it cannot parse stops it before
# this line); each file is read again here, strictly: duplicate keys and alias bombs stop the run by file and line.
# Then the files its `include:` lists (config/methods/, config/claims/) are layered under it, --config still winning.
try:
    own = {str(path): load_yaml(path) for path in workflow.overwrite_configfiles or ["config.yaml"]}
except ConfigError as e:
    stop(f"invalid config: {e}")
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


try:
    if len(listing := [path for path, keys in own.items() if "include" in keys]) > 1:
        raise ConfigError(f"{' and '.join(listing)} both list `include`, and Snakemake keeps only the last list; "
                          "list every layer in one file")
    top = list(own)[-1]
    resolve_includes(config, workflow.basedir, top)
    if "results" not in own[top] and "results" not in (workflow.config_settings.overwrite_config or {}):
        config["results"] = default_results(workflow.overwrite_configfiles[-1] if workflow.overwrite_configfiles
                                            else None)  # never an included layer's folder
except ConfigError as e:
    stop(f"invalid config: {e}")


def validated(cfg):
    """The config with schema defaults filled in; a bad key stops the run with one line naming it."""
    try:
        check_finite(cfg)
        validate(cfg, "../schemas/config.schema.yaml")
        plugins.use(cfg["plugins"])
        check_references(cfg)
    except WorkflowError as e:
        cause = e.__context__  # snakemake wraps the jsonschema ValidationError
        overridden = workflow.config_settings.overwrite_config or {}  # --config's keys: nested values come as text
        stop(f"invalid config: {schema_error_line(cause, overridden) if hasattr(cause, 'absolute_path') else e}")
    except (ConfigError, plugins.PluginError) as e:
        stop(f"invalid config: {e}")
    return cfg


config = validated(config)
layout.use_results(config["results"])  # before any rule reads a path pattern


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    attack=r"[A-Za-z0-9_]+",
    recipe=r"[A-Za-z0-9_]+",
    defence=r"[A-Za-z0-9_]+",
    figure="|".join(re.escape(f) for f in config["figures"]),
    surrogate=r"[A-Za-z0-9_]+",
    gan=r"[A-Za-z0-9_]+",
    perturbation=r"[A-Za-z0-9_]+",
    cls=r"\d+",
    partner=r"\d+",
    target=r"\d+",
    amount=r"p\d*\.?\d+(e-?\d+)?|n\d+",
    seed=r"\d+",
    digest=r"[0-9a-f]{10}",


def link_shell(*pairs):
    """Shell command putting files from a job's output folder where their consumers read them: hard links (across
    file systems a copy, synced to disk under a temporary name and renamed, so never a partial file), stamped now so
    they are newer than the folder; errors to the log. A shell command, as a `run:` block would start a Python
    process per job."""
    steps = " && ".join(f"(ln -f {src} {dst} 2>/dev/null || (cp {src} {dst}.tmp && sync {dst}.tmp && "
                        f"mv -f {dst}.tmp {dst})) && touch {dst}" for src, dst in pairs)
    return f"({steps}) 2> {{log:q}}"


def perturbations_where(per_class):
    """Regex matching the perturbations that do (GAN interpolation) or do not read per-class inputs."""
    names = [p for p, spec in config["perturbations"].items() if (spec["method"] == "gan_interpolation") == per_class]
    return "|".join(re.escape(p) for p in names) or "(?!)"


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


@functools.cache
def data_version(dataset):
    """What a prepared dataset is made from: its config block and, for a local archive, a hash of the archive.
    Every rule that reads the prepared dataset takes it as a param, so a changed archive reruns them even when
    its preparation then fails (Snakemake would otherwise keep outputs whose missing input it cannot remake)."""
    spec = canonical(config["datasets"][dataset])
    path = local_path(spec["source"])
    if path is None or not path.is_file():
        return spec
    return {**spec, "sha256": file_sha256(path)}


def figure_param(key):
    """A parameter read from the figure's config block (its kind's default where the block leaves the key out)."""
    return lambda w: figure_option(config, w.figure, key)


def figures_of(*kinds):
    """Regex matching the names of the figures of some kinds (never matching when there are none)."""
    names = [f for f, spec in config["figures"].items() if spec["kind"] in kinds]
    return "|".join(re.escape(f) for f in names) or "(?!)"


def figures_drawn_by(rule):
    """Regex matching the names of the figures whose kind this plot rule draws (`figure_kinds`)."""
    return figures_of(*figure_kinds.names(rule=rule))


def without_label(block):
    """A method's config block without its display `label`: renaming what figures print reruns nothing."""
    return canonical({k: v for k, v in block.items() if k != "label"})


def defence_spec(w):
    """A victim's defence: its config block, or plain training for 'none'."""
    return {"method": "none"} if w.defence == "none" else without_label(config["defences"][w.defence])


@functools.cache
def cohorts():
    """Each trained victim's cohort, and each cohort by its folder."""
    of_victim = cohort_plan(config)
    return of_victim, {str(c.path): c for c in of_victim.values()}


def victim_of(w):
    """The victim named by a rule's wildcards."""
    return Victim(w.dataset, w.attack, w.recipe, w.defence, int(w.target), w.amount, int(w.seed))


def cohort_of(w):
    """The cohort named by a rule's wildcards."""
    path = layout.COHORT.format(**dict(w.items()))
    if path not in cohorts()[1]:
        raise WorkflowError(f"{path} is not a cohort of this config (cohort_size {config['cohort_size']})")
    return cohorts()[1][path]


def victim_cohort(w):
    """The folder of the cohort that trains and evaluates this victim."""
    return str(cohorts()[0][victim_of(w)].path)


def cohort_members(w):
    """The (attack, target, amount) of each member of the cohort named by the wildcards."""
    return [list(m) for m in cohort_of(w).members]


def training_inputs(w):
    """A training cohort's poison sets and what its defence reads beside the data: the public-data model
    (DP-SGD) or the training folders of the undefended victims' cohorts (sanitisers: read there, so that
    re-evaluating the undefended victims retrains nothing)."""
    cohort = cohort_of(w)
    spec = defence_spec(w)
    extra = {}
    if "pretrained" in spec:
        extra["pretrained"] = f"{layout.surrogate(spec['pretrained'])}/model.pt"
    if bases := base_twins(w):
        extra["bases"] = sorted({f"{c.path}/models" for c, _ in bases})
    return {"poisons": [str(v.poisoned.path) for v in cohort.victims], **extra}


def base_twins(w):
    """Each member's undefended twin with the cohort that trains it, for defences that read it; else nothing."""
    if not plugins.method("defence", defence_spec(w)["method"]).needs_base:
        return []
    return [(cohorts()[0][b], b) for b in (v.undefended() for v in cohort_of(w).victims)]


def base_models(w):
    """The undefended twin's model file of each member, inside its cohort's training folder (sanitisers only)."""
    return [f"{c.path}/models/{member_name(b.attack, b.target, b.amount)}/model.pt" for c, b in base_twins(w)]


def method_module(kind, block):
    """The module declaring a config block's method (its source versions the rules running it)."""
    return plugins.method(kind, block[plugins.METHOD_KEY[kind]]).module


def trigger_network(v):
    """The trained trigger generator and mask of a victim's input-aware attack, or None for a fixed trigger."""
    if plugins.method("attack", config["attacks"][v.attack]["method"]).trigger != "trained":
        return None
    return f"{layout.dynamic(v.dataset, v.attack, v.target, v.seed)}/trigger.pt"


def evaluation_inputs(w):
    """An evaluation cohort's trained models (its training folder) and the trigger networks of input-aware attacks."""
    cohort = cohort_of(w)
    return {"models": f"{cohort.path}/models", "trigger_nets": [n for v in cohort.victims if (n := trigger_network(v))]}


def evaluation_members(w):
    """What evaluating each member takes: its description (recorded in metrics.json), its attack's trigger
    block and trigger network."""
    return [{"describe": {"dataset": v.dataset, "attack": v.attack, "method": config["attacks"][v.attack]["method"],
                          "recipe": v.recipe, "defence": v.defence, "target": v.target, "amount": v.amount,
                          "seed": v.seed},
             "trigger": attack_trigger(v), "trigger_net": trigger_network(v), "name": member_name(v.attack,
                                                                                                v.target, v.amount)}
            for v in cohort_of(w).victims]


def tsne_inputs(w):
    """Each victim of a t-SNE figure with the poisoned training set it learned from."""
    rows = figure_rows(config, w.figure)
    return {
        "models": [f"{v.path}/model.pt" for _, v in rows],
        "poisons": [str(v.poisoned.path) for _, v in rows],
        "data": layout.data(rows[0][1].dataset),
    }


def tsne_titles(w):
    """A t-SNE panel's title: the series' and the defence's display names."""
    names = figure_kinds.figure_labels(config, w.figure)
    return [" | ".join(filter(None, [names["series"].get(label, label), names["defence"].get(v.defence, v.defence)]))
            for label, v in figure_rows(config, w.figure)]


def figure_section(w):
    """The report category of a figure: the seed document and chapter it mirrors."""
    return config["figures"][w.figure]["section"]


def surrogate_data(w):
    """The prepared dataset a surrogate learns from."""
    return layout.data(config["surrogates"][w.surrogate]["dataset"])


def gan_training(name):
    """A GAN recipe without its encoder keys, so retuning the encoder keeps the trained generator."""
    return canonical({k: v for k, v in config["gans"][name].items() if not k.startswith("encode_")})


def gan_encoding(name):
    """Only the encoder keys of a GAN recipe."""
    return canonical({k: v for k, v in config["gans"][name].items() if k.startswith("encode_")})


def perturbation_inputs(w):
    """What a perturbation of one class needs beyond the data: its surrogate, its GAN and latents, or its partner
    dataset."""
    spec = config["perturbations"][w.perturbation]
    if "partner_dataset" in spec:
        return {"partners": layout.data(spec["partner_dataset"])}
    if spec["method"] == "pgd":
        return {"surrogate": f"{layout.surrogate(spec['surrogate'])}/model.pt"}
    if spec["method"] == "gan_interpolation":
        partner = partner_class(int(w.cls), spec, classes_of(config, w.dataset))
        pair = layout.gan_pair(w.dataset, spec["gan"], w.cls, partner)
        return {"generator": f"{pair}/generator.pt", "latents": f"{pair}/latents.npz"}
    return {}


def partner_version(w):
    """What a perturbation's partner dataset is made from (data_version), or None for the perturbed dataset's own."""
    partners = config["perturbations"][w.perturbation].get("partner_dataset")
    return data_version(partners) if partners else None


def attack_perturbed(w):
    """The target class's perturbed images, when the attack perturbs before triggering."""
    name = config["attacks"][w.attack].get("perturbation")
    return {"perturbed": layout.perturbed(w.dataset, name, w.target)} if name else {}


def trigger_of(name):
    """A trigger block by name, keys sorted."""
    return canonical(config["triggers"][name])


def attack_trigger(w):
    """The trigger block of the attack wildcard (none for an input-aware attack: its trigger is trained)."""
    name = config["attacks"][w.attack].get("trigger")
    return trigger_of(name) if name else {}


def attack_network(w):
    """The trained trigger generator and mask of an input-aware attack for this target and seed."""
    net = trigger_network(w)
    return {"trigger_net": net} if net else {}


def attacker_recipe(w):
    """The training recipe of an input-aware attacker's own classifier."""
    return canonical(config["recipes"][config["attacks"][w.attack]["recipe"]])


def attacker_describe(w):
    """An input-aware attacker's own classifier described as a victim's row: dataset, attack, recipe, target, seed."""
    attack = config["attacks"][w.attack]
    return {"dataset": w.dataset, "attack": w.attack, "method": attack["method"], "recipe": attack["recipe"],
            "target": int(w.target), "seed": int(w.seed)}


def victim_metrics(w):
    """Every metrics.json one figure needs, in series order."""
    return [str(v.path / "metrics.json") for _, v in figure_rows(config, w.figure)]


def victim_train_logs(w):
    """Every train_log.json one figure needs, in series order."""
    return [str(v.path / "train_log.json") for _, v in figure_rows(config, w.figure)]


def claim_tables(w):
    """The table of every figure the claims read, by figure name."""
    return {f: layout.TABLE.format(figure=f) for f in claim_figures(config)}


def series_labels(w):
    """The series label of each victim of a figure, parallel to victim_metrics."""
    return [label for label, _ in figure_rows(config, w.figure)]


def figure_scores(w):
    """The filter scores of every poisoned set a filtering figure ranks."""
    f = config["figures"][w.figure]["filter"]
    return [str(p.scores(f)) for _, p in figure_poison_sets(config, w.figure)]


def figure_poison_files(w):
    """The poison sets of a filtering figure, parallel to figure_scores."""
    return [str(p.path) for _, p in figure_poison_sets(config, w.figure)]


def poison_descriptions(w):
    """What each scored poison set is, for the filtering table's rows, parallel to figure_scores."""
    return [{"dataset": p.dataset, "attack": p.attack, "target": p.target, "amount": p.amount, "seed": p.seed}
            for _, p in figure_poison_sets(config, w.figure)]


def victim_descriptions(w):
    """What each victim of a figure is, for per-victim table rows, in series order."""
    return [{"series": label, "dataset": v.dataset, "attack": v.attack, "recipe": v.recipe, "defence": v.defence,
             "target": v.target, "amount": v.amount, "seed": v.seed} for label, v in figure_rows(config, w.figure)]


def poison_labels(w):
    """The series label of each scored poison set."""
    return [label for label, _ in figure_poison_sets(config, w.figure)]


def example_perturbed_keys(w):
    """(perturbation, class) of every perturbed column and class an examples figure shows."""
    spec = config["figures"][w.figure]
    names = sorted({c["perturbation"] for c in spec["columns"].values() if "perturbation" in c})
    return [[n, c] for n in names for c in example_classes(config, w.figure)]


def example_perturbations(w):
    """The perturbed-images files behind example_perturbed_keys, in its order."""
    dataset = config["figures"][w.figure]["dataset"]
    return [layout.perturbed(dataset, n, c) for n, c in example_perturbed_keys(w)]


def recipe_code(recipe, *modules):
    """The code version of training under a recipe: `modules` and the module of the recipe's model."""
    return code_version(*modules, method_module("model", {"model": config["recipes"][recipe]["model"]}))


def training_code(w):
    """The code version of a training cohort: the victims' training, its defence's and its model's modules."""
    return recipe_code(w.recipe, "victims", method_module("defence", defence_spec(w)))


def poisoning_code(w):
    """The code version of a poison set: poisoning, its attack's and its trigger's modules."""
    attack = config["attacks"][w.attack]
    trigger = [method_module("trigger", trigger_of(attack["trigger"]))] if attack.get("trigger") else []
    return code_version("poisons", method_module("attack", attack), *trigger)


def evaluation_code(w):
    """The code version of an evaluation cohort: evaluation, its defence's module (a test-time defence measures
    there) and its members' attack and trigger modules."""
    members = evaluation_members(w)
    return code_version("evaluate", method_module("defence", defence_spec(w)),
                        *sorted({method_module("trigger", m["trigger"]) for m in members if m["trigger"]}
                                | {method_module("attack", m["describe"]) for m in members}))


def tables_code():
    """The code version of the tables: tables and the defence modules whose measures are columns."""
    return code_version("tables", *plugins.modules("defence"))


def example_trigger_modules(w):
    """The modules of the triggers an examples figure draws."""
    columns = config["figures"][w.figure]["columns"].values()
    return sorted({method_module("trigger", trigger_of(c["trigger"])) for c in columns if "trigger" in c})


def all_victim_metrics(w):
    """Every metrics.json of every figure, each once."""
    return sorted({str(v.path / "metrics.json") for f in config["figures"] for v in figure_victims(config, f)})
