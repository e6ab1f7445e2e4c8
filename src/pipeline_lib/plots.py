"""Figures in the thesis's style: per-class heatmaps over target class x poisoning amount, defence grids."""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # titles, labels and class names are drawn as written, never as TeX
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .artifacts import atomic_path  # noqa: E402
from .claims import estimate  # noqa: E402
from .filtering import poisoned_among_lowest  # noqa: E402

METRIC_LABELS = {
    "asr_labelled": "attack success rate (%)",
    "asr_classified": "attack success rate, excl. already-target predictions (%)",
    "robust_accuracy": "accuracy on triggered images (%)",
    "clean_accuracy": "natural accuracy (%)",
    "target_accuracy": "natural accuracy on the target class (%)",
    "der": "defence effectiveness rating, DER (%)",
}


def seaborn() -> Any:
    """seaborn, imported where a plot uses it (1.5 s of start-up the image galleries need not pay)."""
    import seaborn as sns

    return sns


def colours(n: int) -> list[tuple[float, float, float]]:
    """seaborn's colour-blind palette of n colours."""
    return seaborn().color_palette("colorblind", n)


def amount_label(rows: pd.DataFrame) -> str:
    """Axis label of one amount: the configured rate (of the target class) or count, with the image count(s)."""
    lo, hi = rows["count"].min(), rows["count"].max()
    n = f"n={lo}" if lo == hi else f"n={lo}-{hi}"
    if rows["rate"].notna().all():
        return f"{100 * rows['rate'].iloc[0]:g}%\n({n})"
    return f"{n}\n({100 * rows['fraction_of_train'].iloc[0]:.2g}% of train)"


def amounts_text(rows: pd.DataFrame) -> str:
    """The poisoning amounts of some rows in words: '100% of the target class (n=135)', 'n=34 (2.5% of train)'."""
    if rows["count"].max() == 0:
        return "no poison"
    texts = [amount_label(g).replace("%\n(", "% of the target class (").replace("\n", " ")
             for _, g in rows[rows["count"] > 0].sort_values("count").groupby("amount", sort=False)]
    return ", ".join(texts)


Labels = Mapping[str, Mapping[str, Any]]  # figure_kinds.figure_labels: display names, class counts


def display_series(series: Sequence[Any], attacks: Sequence[str], labels: Labels | None = None) -> list[str]:
    """Each row's series by its display name, or its attack's where the figure has no series (an empty label)."""
    labels = labels or {}
    return [labels.get("series", {}).get(s, s) if isinstance(s, str) and s else labels.get("attack", {}).get(a, a)
            for s, a in zip(series, attacks)]


def labelled(df: pd.DataFrame, labels: Labels | None = None) -> pd.DataFrame:
    """The table as its figure shows it: series (display_series) and defences by their display names, rows in
    series order (the config's, then first appearance)."""
    labels = labels or {}
    shown = display_series(df["series"], df["attack"], labels)
    order = list(dict.fromkeys([*labels.get("series", {}).values(), *shown]))
    out = df.assign(series=shown, defence=df["defence"].map(lambda d: labels.get("defence", {}).get(d, d)))
    return out.iloc[np.argsort([order.index(s) for s in shown], kind="stable")].reset_index(drop=True)


def context(df: pd.DataFrame, labels: Labels | None = None) -> str:
    """What every panel of a figure shares, said once: 'digits; target classes 0, 1 (2 of 10); 3 seeds'."""
    poisoned = df[df["count"] > 0]
    names = list(dict.fromkeys(poisoned.sort_values("target")["target_name"].dropna().astype(str)))
    datasets = list(dict.fromkeys(df["dataset"].dropna().astype(str)))
    classes = {(labels or {}).get("classes", {}).get(d) for d in datasets}
    of = f" ({len(names)} of {classes.pop()})" if len(classes) == 1 and None not in classes else ""
    seeds = df["seed"].nunique()
    parts = [", ".join(datasets), f"target class{'es' * (len(names) > 1)} {', '.join(names)}{of}" if names else "",
             f"{seeds} seed{'s' * (seeds > 1)}"]
    return "; ".join(p for p in parts if p)


def interval(rows: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """Some rows' mean of a metric with the scorecard's 95% interval (claims.estimate: each rate drawn from its
    posterior given its test images, a cell's seeds resampled), clipped to [0, 1]."""
    est = estimate(rows, {"metric": metric}, np.random.default_rng(0))
    low, high = np.clip(est.interval, 0, 1)
    return est.value, float(low), float(high)


BARS = "bars: 95% interval\nover seeds and test images"


def suptitle(fig: plt.Figure, *lines: str, fontsize: float = 11) -> None:
    """The figure's title, each line wrapped to the figure's width (set it last)."""
    chars = max(24, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in lines if line), fontsize=fontsize)


def legend_right(fig: plt.Figure, handles: list[Any], labels: list[str], title: str = "") -> tuple[float, ...]:
    """A one-column legend right of the panels, read top to bottom in series order; widens the figure to hold it
    and returns the layout rect left for the panels."""
    legend = fig.legend(handles, labels, loc="center right", fontsize=9, frameon=False, title=title,
                        title_fontsize=8, alignment="left")
    fig.canvas.draw()
    width = legend.get_window_extent().width / fig.dpi + 0.15
    fig.set_figwidth(fig.get_figwidth() + width)
    return (0, 0, 1 - width / fig.get_figwidth(), 1)


def save_figure(fig: plt.Figure, path: str | Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> None:
    """Lay out (leaving `rect` for the plots), write as PNG atomically and free a figure."""
    fig.tight_layout(rect=rect)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _facets(n: int) -> tuple[plt.Figure, np.ndarray]:
    """A grid of up to five panels per row sharing the y axis."""
    n_cols = min(n, 5)
    n_rows = -(-n // n_cols)
    return plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols + 1.0, 2.9 * n_rows + 0.8), squeeze=False, sharey=True)


def _columns(df: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Amount tokens in increasing size, and their axis labels."""
    order = df.sort_values(["count", "amount"]).drop_duplicates("amount")["amount"].tolist()
    return order, {a: amount_label(rows) for a, rows in df.groupby("amount")}


def _panel_heatmap(df: pd.DataFrame, metric: str, ax: plt.Axes, cbar: bool) -> None:
    """One heatmap: target classes as rows, amounts as columns, mean over seeds."""
    order, names = _columns(df)
    rows = df.sort_values("target").drop_duplicates("target")["target_name"].tolist()
    grid = (df.assign(value=100 * df[metric]).groupby(["target_name", "amount"])["value"].mean()
            .unstack("amount").reindex(index=rows, columns=order).rename(columns=names))
    _heatmap(grid, ax, METRIC_LABELS[metric] if cbar else None)
    ax.set_xlabel("poisoned images (share of the target class)" if df["rate"].notna().all() else "poisoned images")
    ax.set_ylabel("target class")


def _heatmap(grid: pd.DataFrame, ax: plt.Axes, cbar: str | None = None, size: float = 10) -> None:
    """An annotated 0-100 heatmap (numbers of `size` points); an empty cell (a rate its victims do not have, DER
    without a defence) says 'not measured'."""
    seaborn().heatmap(grid, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", ax=ax, cbar=cbar is not None,
                      cbar_kws={"label": cbar} if cbar else None, annot_kws={"size": size})
    for (r, c), value in np.ndenumerate(grid.to_numpy(float)):
        if np.isnan(value):
            ax.add_patch(plt.Rectangle((c, r), 1, 1, fill=False, hatch="//", edgecolor="0.75", lw=0))
            ax.text(c + 0.5, r + 0.5, "not\nmeasured", ha="center", va="center", fontsize=0.7 * size, color="0.3")
    ax.tick_params(axis="y", rotation=0)


def asr_heatmap(df: pd.DataFrame, metric: str, title: str, path: str | Path, labels: Labels | None = None) -> None:
    """Annotated heatmaps of a metric, one panel per series (e.g. one- vs four-corner trigger, Figure 3-14)."""
    df = labelled(df, labels)
    panels = list(dict.fromkeys(df["series"]))
    n_cols, n_rows = df["amount"].nunique(), df["target"].nunique()
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * (1.2 * n_cols + 2.8), 0.45 * n_rows + 2.4),
                             squeeze=False)
    for i, (label, ax) in enumerate(zip(panels, axes[0])):
        part = df[df["series"] == label]
        _panel_heatmap(part, metric, ax, cbar=i == len(panels) - 1)
        ax.set_title(f"{label}\nmean natural accuracy {100 * part['clean_accuracy'].mean():.1f}%", fontsize=10)
    suptitle(fig, title, f"{context(df, labels)}; mean over seeds")
    save_figure(fig, path)


def _as_list(metric: str | list[str]) -> list[str]:
    """One metric or several, as a list."""
    return [metric] if isinstance(metric, str) else metric


def asr_lines(df: pd.DataFrame, metric: str | list[str], title: str, path: str | Path,
              labels: Labels | None = None) -> None:
    """Metrics against the poisoning amount, a line per series, a panel per target class, a row of panels per
    metric (each row its own y axis); bars: the scorecard's 95% interval (BARS)."""
    metrics = _as_list(metric)
    df = labelled(df, labels)
    order = _columns(df)[0]
    targets = df.sort_values("target").drop_duplicates("target")[["target", "target_name"]].values.tolist()
    n_cols = min(len(targets), 5)
    per_metric = -(-len(targets) // n_cols)
    fig, axes = plt.subplots(len(metrics) * per_metric, n_cols, squeeze=False,
                             figsize=(3.4 * n_cols + 1.2, 2.9 * len(metrics) * per_metric + 1.2))
    series = list(dict.fromkeys(df["series"]))
    palette = dict(zip(series, colours(len(series))))
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        ax.axis("off")
    for i, m in enumerate(metrics):
        for j, (t, name) in enumerate(targets):
            ax = axes[i * per_metric + j // n_cols, j % n_cols]
            ax.axis("on")
            part = df[df["target"] == t].assign(x=lambda d: d["amount"].map(order.index))
            names = _columns(part)[1]  # counts differ between target classes
            for label, g in part.groupby("series", sort=False):
                points = np.array([(x, *interval(rows, m)) for x, rows in g.groupby("x") if rows[m].notna().any()])
                if len(points):
                    x, mid, low, high = points.T
                    handles[label] = ax.errorbar(x, 100 * mid, yerr=[100 * (mid - low), 100 * (high - mid)],
                                                 marker="o", ms=4, capsize=2, label=label, color=palette[label])
            ax.set_title(f"target: {name}", fontsize=10)
            ax.set_xticks(range(len(order)), [names.get(a, "") for a in order], fontsize=8)
            ax.set_ylim(-3, 103)
            if j % n_cols:
                ax.tick_params(labelleft=False)  # the row's metric, labelled on its first panel
            else:
                ax.set_ylabel(textwrap.fill(METRIC_LABELS[m], 32), fontsize=9)
            if i == len(metrics) - 1 and j >= len(targets) - n_cols:
                ax.set_xlabel("poisoned images", fontsize=9)
            ax.grid(alpha=0.3)
    shown = [s for s in series if s in handles]
    rect = legend_right(fig, [handles[s] for s in shown], shown, BARS)
    suptitle(fig, title, context(df, labels))
    save_figure(fig, path, rect=rect)


# the summary tables' columns: rates (shown as percentages): the victims', DER and the defences'; then numbers
PERCENT = {"clean_accuracy": "clean accuracy", "asr_labelled": "ASR", "asr_classified": "ASR (excl. target preds)",
           "robust_accuracy": "accuracy on triggered", "target_accuracy": "target-class accuracy", "der": "DER",
           "isolation_precision": "isolation precision", "isolation_recall": "isolation recall",
           "detection_precision": "detection precision", "detection_recall": "detection recall",
           "nc_names_target": "NC names the target", "strip_frr": "STRIP FRR", "strip_far": "STRIP FAR"}
NUMBERS = {"epsilon": "epsilon", "strip_auroc": "STRIP AUROC", "nc_anomaly_index": "NC anomaly index",
           "fp_pruned": "FP pruned", "anp_pruned": "ANP pruned", "clp_pruned": "CLP pruned"}


def defence_means(df: pd.DataFrame, defences: list[str], labels: Labels | None = None) -> pd.DataFrame:
    """Series x defence means (over targets, amounts, seeds) of the metrics and of what each defence measured, with
    each series' dataset and poisoning amount; series in order, defences in the given order (display names)."""
    keep = [c for c in [*PERCENT, *NUMBERS] if c in df and df[c].notna().any()]
    df = labelled(df, labels)
    about = {s: (", ".join(dict.fromkeys(g["dataset"].astype(str))), amounts_text(g))
             for s, g in df.groupby("series", sort=False)}
    shown = [(labels or {}).get("defence", {}).get(d, d) for d in defences]
    df = df.assign(series=pd.Categorical(df["series"], categories=list(about)),
                   defence=pd.Categorical(df["defence"], categories=shown))
    means = df.groupby(["series", "defence"], observed=True)[keep].mean().reset_index()
    means.insert(1, "dataset", means["series"].map(lambda s: about[s][0]).astype(str))
    means.insert(2, "poisoned", means["series"].map(lambda s: about[s][1]).astype(str))
    return means


def defence_summary(means: pd.DataFrame) -> pd.DataFrame:
    """The means as the seeds' tables show them: percentages to one decimal, readable column names."""
    percent = [c for c in means if c in PERCENT]
    return means.assign(**{c: (100 * means[c]).round(1) for c in percent}).rename(
        columns={"series": "attack", **PERCENT, **NUMBERS})


def defence_heatmap(df: pd.DataFrame, metric: str | list[str], defences: list[str], title: str,
                    path: str | Path, table: str | Path, labels: Labels | None = None) -> None:
    """Attack (series, with its poisoning amount) x defence heatmaps, a panel per metric (two a row, one where
    many defences make panels wide), and the same means as a markdown table; defences in the given order."""
    metrics = _as_list(metric)
    means = defence_means(df, defences, labels)
    rows_named = {s: f"{s}\n{p}" for s, p in zip(means["series"], means["poisoned"])}
    cols = min(len(metrics), 2 if len(defences) <= 6 else 1)
    rows = -(-len(metrics) // cols)
    cells = max(0.95 * len(defences), 3.0)  # inches of heatmap a panel has, its row labels beside it
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(
        cols * (cells + 3.6), rows * (0.55 * means["series"].nunique() + 2.2) + 0.6))
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    for ax, m in zip(axes.flat, metrics):
        grid = 100 * means.pivot(index="series", columns="defence", values=m).rename(index=rows_named)
        _heatmap(grid, ax, size=12)
        ax.set_title(textwrap.fill(METRIC_LABELS[m], int(cells * 72 / (0.55 * 13))), fontsize=13)
        ax.set_xlabel("defence", fontsize=11)
        ax.set_ylabel("attack (poisoned images)", fontsize=11)
        ax.tick_params(labelsize=11)
        ax.tick_params(axis="x", rotation=30)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    about = context(df, labels)
    suptitle(fig, title, f"{about}; mean over targets and seeds", fontsize=14)
    save_figure(fig, path)
    summary = defence_summary(means)
    summary = summary.astype(object).where(summary.notna(), None)  # blank cells where a defence reports nothing
    with atomic_path(table) as tmp:
        Path(tmp).write_text(f"# {title}\n\n{about}; percentages are means over targets and seeds.\n\n"
                             + summary.to_markdown(index=False, missingval="") + "\n")


LOSS_GROUPS = {"poisoned": "poisoned samples", "all": "all samples",
               "poisoned_without_trigger": "poisoned samples without the trigger"}


def moving_average(v: np.ndarray, k: int = 3) -> np.ndarray:
    """Centred moving average over k points, shrinking at the ends (the thesis smooths Figure 4-1 by 3)."""
    pad = k // 2
    c = np.convolve(np.pad(v, pad, mode="edge"), np.ones(k) / k, mode="valid")
    return c[:len(v)]


def loss_trace(logs: list[dict], names: dict[int, str], title: str, path: str | Path) -> None:
    """Median and interquartile range of per-sample training losses per group, a panel per target (Figure 4-1)."""
    fig, axes = _facets(len(logs))
    colors = dict(zip(LOSS_GROUPS, colours(3)))
    for ax, log in zip(axes.flat, logs):
        trace = log["loss_trace"]
        steps = np.array([p["step"] for p in trace])
        for key, label in LOSS_GROUPS.items():
            if trace and key in trace[0]:
                q = {s: moving_average(np.array([p[key][s] for p in trace])) for s in ("q25", "median", "q75")}
                ax.plot(steps, q["median"], color=colors[key], label=label)
                ax.fill_between(steps, q["q25"], q["q75"], color=colors[key], alpha=0.25)
        target = log["poison"]["target"]
        ax.set_title(f"target: {names.get(target, target)} ({log['poison']['count']} poisoned)", fontsize=10)
        ax.set_xlabel("training step", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(logs):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("cross-entropy loss", fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    rect = legend_right(fig, handles, labels, "median and quartiles")
    suptitle(fig, title)
    save_figure(fig, path, rect=rect)


def filtering_curve(scores: list[dict[str, np.ndarray]], series: list[str], title: str, path: str | Path) -> None:
    """Poisoned examples found among the N lowest-label-probability training examples (Figure 3-1)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    palette = dict(zip(dict.fromkeys(series), colours(len(set(series)))))
    for label in dict.fromkeys(series):
        runs = [poisoned_among_lowest(s["probability"], s["poisoned"]) for s, lab in zip(scores, series) if lab == label]
        found = np.mean(runs, axis=0)
        n = np.arange(1, len(found) + 1)
        total = int(scores[series.index(label)]["poisoned"].sum())
        ax.plot(n, found, color=palette[label], label=f"{label} ({total} poisoned)")
    first = scores[0]
    ax.plot(n, n * first["poisoned"].mean(), color="grey", ls=":", label="inspecting at random")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())  # plain numbers: the log scale's 10^k labels need math text
    ax.set_xlabel("training examples inspected, lowest label probability first")
    ax.set_ylabel("poisoned examples found")
    ax.set_title(textwrap.fill(title, 64), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def tsne_panels(maps: list[tuple[np.ndarray, np.ndarray]], titles: list[str], classes: list[str], title: str,
                path: str | Path) -> None:
    """t-SNE maps of clean vs poisoned images of a class, a panel per victim (001 seed, Figure 5), a row of panels
    per class (`classes`: each panel's, grouped)."""
    columns = len(maps) // len(set(classes))
    fig, axes = plt.subplots(len(maps) // columns, columns, figsize=(4 * columns, 4 * len(maps) // columns + 0.2),
                             squeeze=False)
    several = len(set(classes)) > 1
    for ax, (xy, poisoned), name, cls in zip(axes.flat, maps, titles, classes):
        ax.scatter(*xy[~poisoned].T, s=6, c="tab:blue", alpha=0.6,
                   label="clean images of the class" if several else f"clean '{cls}'")
        ax.scatter(*xy[poisoned].T, s=6, c="tab:red", alpha=0.8,
                   label="poisoned, labelled as the class" if several else f"poisoned, labelled '{cls}'")
        ax.set_title(f"'{cls}': {name}" if several else name, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    suptitle(fig, title)
    save_figure(fig, path, rect=(0, 0.06 / (len(maps) // columns), 1, 1))


VERDICT_COLOURS = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:orange"}


def scorecard_figure(card: pd.DataFrame, title: str, path: str | Path) -> None:
    """One row per claim, grouped by seed (or paper): the criterion as a grey band, the judged statistic (the
    measure, the difference of an ordering, the share of classes of a count, the smallest step of a trend) with its
    95% interval, coloured by verdict."""
    card = card.assign(seed_doc=card["source"].str.split().str[0].str.rstrip(",;:").fillna(""))
    order = list(dict.fromkeys(card["seed_doc"]))
    card = card.sort_values("seed_doc", key=lambda s: s.map(order.index), kind="stable").reset_index(drop=True)
    scale = card["levels"].fillna(1).to_numpy(float)
    stat = card[["statistic", "statistic_low", "statistic_high"]].to_numpy(float) / scale[:, None]
    band = card[["criterion_low", "criterion_high"]].to_numpy(float) / scale[:, None]
    finite = np.concatenate([stat[np.isfinite(stat)], band[np.isfinite(band)], [-0.05, 1.05]])
    lo, hi = finite.min() - 0.05, finite.max() + 0.05
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.32 * len(card)))
    y = np.arange(len(card))[::-1]
    for yi, (a, b) in zip(y, band):
        ax.barh(yi, min(b, hi) - max(a, lo), left=max(a, lo), height=0.6, color="0.88", zorder=1)
    colours = card["verdict"].map(VERDICT_COLOURS).tolist()
    ax.hlines(y, stat[:, 1], stat[:, 2], colors=colours, lw=3, zorder=2)
    ax.scatter(stat[:, 0], y, c=colours, s=18, zorder=3)
    ax.set_yticks(y, [f"{c}  [{v}]" for c, v in zip(card["claim"], card["verdict"])], fontsize=7)
    for i, doc in enumerate(order):
        top = y[card.index[card["seed_doc"] == doc][0]] + 0.5
        if i:
            ax.axhline(top, color="0.5", lw=0.8)
        label = f"seed {doc}" if doc[:3].isdigit() else doc   # a seed's number, else a paper's first author
        ax.text(lo + 0.01, top - 0.1, label, fontsize=7, color="0.35", va="top")
    ax.set_xlim(lo, hi)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_xlabel("judged statistic (grey: where the claim holds; counts as a share of the classes)", fontsize=8)
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)
