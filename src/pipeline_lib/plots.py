"""Figures in the thesis's style: per-class heatmaps over target class x poisoning amount, defence grids."""
from __future__ import annotations

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
    return plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols + 1.0, 2.9 * n_rows + 0.6), squeeze=False, sharey=True)


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
    seaborn().heatmap(grid, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", ax=ax, cbar=cbar,
                      cbar_kws={"label": METRIC_LABELS[metric]} if cbar else None, annot_kws={"size": 9})
    ax.set_xlabel("poisoned images (share of the target class)" if df["rate"].notna().all() else "poisoned images")
    ax.set_ylabel("target class")
    ax.tick_params(axis="y", rotation=0)


def asr_heatmap(df: pd.DataFrame, metric: str, title: str, path: str | Path) -> None:
    """Annotated heatmaps of a metric, one panel per series (e.g. one- vs four-corner trigger, Figure 3-14)."""
    panels = list(dict.fromkeys(df["series"].fillna("")))
    n_cols, n_rows = df["amount"].nunique(), df["target"].nunique()
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * (1.2 * n_cols + 2.5), 0.45 * n_rows + 1.8),
                             squeeze=False)
    for i, (label, ax) in enumerate(zip(panels, axes[0])):
        part = df[df["series"].fillna("") == label]
        _panel_heatmap(part, metric, ax, cbar=i == len(panels) - 1)
        ax.set_title(f"{label}\n" * bool(label) + f"mean natural accuracy {100 * part['clean_accuracy'].mean():.1f}%",
                     fontsize=9)
    seeds = df["seed"].nunique()
    fig.suptitle(title + (f" (mean of {seeds} seeds)" if seeds > 1 else ""), fontsize=10)
    save_figure(fig, path)


def _as_list(metric: str | list[str]) -> list[str]:
    """One metric or several, as a list."""
    return [metric] if isinstance(metric, str) else metric


def asr_lines(df: pd.DataFrame, metric: str | list[str], title: str, path: str | Path) -> None:
    """Metrics against the poisoning amount, a line per series, a panel per target class and metric
    (a row of panels per metric; mean +- sd over seeds)."""
    metrics = _as_list(metric)
    order = _columns(df)[0]
    targets = df.sort_values("target").drop_duplicates("target")[["target", "target_name"]].values.tolist()
    panels = [(m, t, name) for m in metrics for t, name in targets]
    fig, axes = _facets(len(panels))
    palette = dict(zip(dict.fromkeys(df["series"]), colours(df["series"].nunique())))
    for ax, (m, t, name) in zip(axes.flat, panels):
        part = df[df["target"] == t].assign(value=100 * df[m], x=lambda d: d["amount"].map(order.index))
        names = _columns(part)[1]  # counts differ between target classes
        for label, g in part.groupby("series", sort=False):
            stats = g.groupby("x")["value"].agg(["mean", "std"]).reset_index()
            ax.errorbar(stats["x"], stats["mean"], yerr=stats["std"].fillna(0), marker="o", ms=4, capsize=2,
                        label=label, color=palette[label])
        ax.set_title(f"target: {name}", fontsize=9)
        ax.set_xticks(range(len(order)), [names.get(a, "") for a in order], fontsize=7)
        ax.set_ylim(-3, 103)
        ax.set_ylabel(METRIC_LABELS[m], fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, rect=(0, 0.06 + 0.03 * (len(labels) > 4), 1, 1))


# the summary tables' columns: rates (shown as percentages): the victims', DER and the defences'; then numbers
PERCENT = {"clean_accuracy": "clean accuracy", "asr_labelled": "ASR", "asr_classified": "ASR (excl. target preds)",
           "robust_accuracy": "accuracy on triggered", "target_accuracy": "target-class accuracy", "der": "DER",
           "isolation_precision": "isolation precision", "isolation_recall": "isolation recall",
           "detection_precision": "detection precision", "detection_recall": "detection recall",
           "nc_names_target": "NC names the target", "strip_frr": "STRIP FRR", "strip_far": "STRIP FAR"}
NUMBERS = {"epsilon": "epsilon", "strip_auroc": "STRIP AUROC", "nc_anomaly_index": "NC anomaly index",
           "fp_pruned": "FP pruned", "anp_pruned": "ANP pruned", "clp_pruned": "CLP pruned"}


def _series_or_attack(df: pd.DataFrame) -> pd.DataFrame:
    """Rows labelled by their series, or by their attack where the figure has no series."""
    return df.assign(series=df["series"].where(df["series"].notna() & (df["series"] != ""), df["attack"]))


def defence_means(df: pd.DataFrame, defences: list[str]) -> pd.DataFrame:
    """Series x defence means (over targets, amounts, seeds) of the metrics and of what each defence measured;
    series in order of appearance, defences in the given order."""
    keep = [c for c in [*PERCENT, *NUMBERS] if c in df and df[c].notna().any()]
    df = _series_or_attack(df)
    df = df.assign(series=pd.Categorical(df["series"], categories=list(dict.fromkeys(df["series"]))),
                   defence=pd.Categorical(df["defence"], categories=defences))
    return df.groupby(["series", "defence"], observed=True)[keep].mean().reset_index()


def defence_summary(means: pd.DataFrame) -> pd.DataFrame:
    """The means as the seeds' tables show them: percentages to one decimal, readable column names."""
    percent = [c for c in means if c in PERCENT]
    return means.assign(**{c: (100 * means[c]).round(1) for c in percent}).rename(
        columns={"series": "attack", **PERCENT, **NUMBERS})


def defence_heatmap(df: pd.DataFrame, metric: str | list[str], defences: list[str], title: str,
                    path: str | Path, table: str | Path) -> None:
    """Attack (series) x defence heatmaps, a panel per metric (two panels a row), and the same means as a markdown
    table; defences as columns in the given order."""
    metrics = _as_list(metric)
    means = defence_means(df, defences)
    cols = min(len(metrics), 2)
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(
        cols * (1.3 * len(defences) + 2.6), rows * (0.5 * means["series"].nunique() + 2)))
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    for ax, m in zip(axes.flat, metrics):
        grid = 100 * means.pivot(index="series", columns="defence", values=m)
        seaborn().heatmap(grid, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", ax=ax, cbar=False,
                          annot_kws={"size": 9})
        ax.set_title(METRIC_LABELS[m], fontsize=9)
        ax.set_xlabel("defence")
        ax.set_ylabel("attack")
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    summary = defence_summary(means)
    summary = summary.astype(object).where(summary.notna(), None)  # blank cells where a defence reports nothing
    with atomic_path(table) as tmp:
        Path(tmp).write_text(f"# {title}\n\n" + summary.to_markdown(index=False, missingval="") + "\n")


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
        ax.set_title(f"target: {names.get(target, target)} ({log['poison']['count']} poisoned)", fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(logs):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("cross-entropy loss", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, rect=(0, 0.07, 1, 1))


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
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def tsne_panels(maps: list[tuple[np.ndarray, np.ndarray]], titles: list[str], cls_name: str, title: str,
                path: str | Path) -> None:
    """t-SNE maps of clean vs poisoned images of one class, a panel per victim (001 seed, Figure 5)."""
    fig, axes = plt.subplots(1, len(maps), figsize=(4 * len(maps), 4.2), squeeze=False)
    for ax, (xy, poisoned), name in zip(axes[0], maps, titles):
        ax.scatter(*xy[~poisoned].T, s=6, c="tab:blue", alpha=0.6, label=f"clean '{cls_name}'")
        ax.scatter(*xy[poisoned].T, s=6, c="tab:red", alpha=0.8, label=f"poisoned, labelled '{cls_name}'")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, rect=(0, 0.06, 1, 1))


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
