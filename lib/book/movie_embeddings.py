"""Chapter 3 (movie embeddings): its values, figures and tables, from ``results/movies*``.

Titles reach readers through ``display_title`` ("The Lion King (1994)", not MovieLens's
"Lion King, The (1994)").
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, pct
from lib.core.artifacts import load_arrays, load_json, results_path
from lib.movies.titles import display_title

CLOSE_GAP = 1e-3  # "well converged" for the sensitivity discussion


def gap_text(row) -> str:
    """A run's final relative gap to the floor as shown in the text and the runs table."""
    if row["diverged"]:
        return "diverged"
    return "< 1e-10" if abs(row["gap"]) < 1e-10 else f"{row['gap']:.2e}"


def _run_values(m: dict) -> dict:
    """The optimiser runs: best, converged, diverged, within target, and the sensitivity split."""
    runs = pd.DataFrame(m["runs"])
    runs["gap"] = runs["gap"].astype(float)
    converged = runs[~runs["diverged"]]
    ok_runs = converged[converged["init"] == "normal"]
    return dict(
        runs=runs, best=runs.loc[runs["name"] == m["best_run"]].iloc[0], converged=converged,
        diverged=runs[runs["diverged"]], within=runs[(~runs["diverged"]) & (runs["gap"] <= m["target_gap"])],
        zero_runs=runs[runs["init"] == "zeros"], ok_runs=ok_runs, close_gap=CLOSE_GAP,
        close=ok_runs[ok_runs["gap"] <= CLOSE_GAP], far=ok_runs[ok_runs["gap"] > CLOSE_GAP],
        rho=ok_runs["gap"].rank().corr(ok_runs["overlap_with_floor_frequent"].rank()))


def _choice_values(m: dict) -> dict:
    """The choice of d and the hold-out evaluation."""
    dims = pd.DataFrame(m["dims"])
    best_dim_row = dims.loc[dims["validation_hit_rate"].idxmax()]
    n_val = m["validation_users"]
    eval_table = pd.DataFrame(m["evaluation"]["methods"])
    rate = dict(zip(eval_table["method"], eval_table["hit_rate"]))
    return dict(
        dims=dims, dim_row=dims.loc[dims["dim"] == m["dim"]].iloc[0], best_dim_row=best_dim_row, n_val=n_val,
        se_best=math.sqrt(best_dim_row["validation_hit_rate"] * (1 - best_dim_row["validation_hit_rate"]) / n_val),
        evaluation=m["evaluation"], eval_table=eval_table, rate=rate,
        se=dict(zip(eval_table["method"], eval_table["standard_error"])),
        cos_method=next(k for k in rate if k.startswith("embeddings, cosine (") and "floor" not in k),
        dot_method=next(k for k in rate if k.startswith("embeddings, dot")))


def values() -> SimpleNamespace:
    """What the chapter's prose quotes, read from the frozen artifacts."""
    m = load_json("movies")
    stats, alt = m["stats"], m["alternative"]
    threshold = m["liked_threshold"]
    queries = m["queries"]
    v = SimpleNamespace(
        m=m, stats=stats, alt=alt, ratings_stats=stats["ratings"], like_stats=stats["likes"],
        cooc=stats["cooccurrence"], floor_info=m["floor"], sim=m["similarity_comparison"],
        sens=m["sensitivity"], threshold=threshold, gap_text=gap_text,
        share_liked=sum(v for k, v in stats["ratings"]["rating_shares"].items() if float(k) >= threshold),
        queries=queries, top_pair=_display_pair(stats["cooccurrence"]["top_pairs"][0]),
        **dict(zip(("apollo", "toy", "home"), (queries[q] for q in ("Apollo 13", "Toy Story", "Home Alone")))),
        **_run_values(m), **_choice_values(m))
    for name in ("apollo", "toy", "home"):
        setattr(v, f"{name}_shown", display_title(getattr(v, name)))
    v.alt_titles = ", ".join(display_title(t) for t, r in alt["recommendations"].items() if r)
    v.alt_common = ", ".join(f"{r['common_with_main']}/10" for r in alt["recommendations"].values() if r)
    v.query_overlap_min = ", ".join(f"{min(r[t] for r in v.ok_runs['query_overlap_with_best'])}"
                                    for t in (v.apollo, v.toy, v.home))
    return v


def _display_pair(pair: dict) -> dict:
    return {**pair, "a": display_title(pair["a"]), "b": display_title(pair["b"])}


def definitions_table(v: SimpleNamespace) -> Markdown:
    """The two definitions of a like, side by side."""
    rows = [("likes", "n_likes", "{:,}"), ("share of all ratings", "like_fraction", "{:.1%}"),
            ("users with a like", "n_users", "{:,}"), ("movies with a like", "n_movies", "{:,}"),
            ("density of L", "density", "{:.2%}"), ("co-liked pairs", "cooccurrence_nonzero_fraction", "{:.1%}"),
            ("median likes per user", "likes_per_user_median", "{:g}"),
            ("median likes per movie", "likes_per_movie_median", "{:g}"),
            ("movies with a single like", "movies_with_one_like", "{:,}")]
    table = pd.DataFrame({
        "": [label for label, _, _ in rows],
        f"rating ≥ {v.threshold:g}": [fmt.format(v.alt["main"][key]) for _, key, fmt in rows],
        "rating ≥ user's mean": [fmt.format(v.alt["alternative"][key]) for _, key, fmt in rows],
    })
    return md_table(table)


def cooccurrence_figure(v: SimpleNamespace) -> plt.Figure:
    """How many movie pairs are co-liked by how many users (log-log)."""
    counts = np.asarray(v.cooc["value_counts"])
    values_ = np.arange(len(counts))
    keep = (values_ > 0) & (counts > 0)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.scatter(values_[keep], counts[keep], s=10)
    ax.set(xscale="log", yscale="log", xlabel="users who like both movies (X_ij)",
           ylabel="number of movie pairs")
    return fig


def pairs_table(v: SimpleNamespace) -> Markdown:
    pairs = pd.DataFrame(v.cooc["top_pairs"])
    pairs["a"], pairs["b"] = pairs["a"].map(display_title), pairs["b"].map(display_title)
    return md_table(pairs.rename(columns={"a": "movie", "b": "liked together with", "count": "users who like both"}))


def dim_figure(v: SimpleNamespace) -> plt.Figure:
    """Explained share and validation hit-rate against d, the chosen d circled."""
    dims, m = v.dims, v.m
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.2))
    left.plot(dims["dim"], dims["explained"], marker="o")
    left.set(xscale="log", xlabel="d", ylabel="explained share of ‖X₀‖²")
    left.set_xticks(dims["dim"], [str(d) for d in dims["dim"]])
    right.plot(dims["dim"], dims["validation_hit_rate"], marker="o", label="cosine")
    right.plot(dims["dim"], dims["validation_hit_rate_dot"], marker="s", label="dot product")
    right.axhline(v.best_dim_row["validation_hit_rate"] - v.se_best, ls="--", color="grey", lw=1)
    right.scatter([m["dim"]], [v.dim_row["validation_hit_rate"]], s=120, facecolors="none", edgecolors="black",
                  label=f"chosen d = {m['dim']}")
    right.set(xscale="log", xlabel="d", ylabel="validation hit-rate@10")
    right.set_xticks(dims["dim"], [str(d) for d in dims["dim"]])
    right.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _dash_or(fmt: str):
    return lambda value: "—" if value is None or pd.isna(value) else fmt.format(value)


def runs_table(v: SimpleNamespace) -> Markdown:
    """Every optimiser run: gap, steps, seconds and top-10 overlap with the floor."""
    runs = v.runs
    table = pd.DataFrame({
        "optimiser": runs["optimizer"], "lr": runs["lr"].map(lambda x: f"{x:g}"), "init": runs["init"],
        "final gap": runs.apply(gap_text, axis=1),
        "steps": runs["steps"],
        "steps to 0.5%": runs["target_step"].map(lambda x: "—" if x is None or pd.isna(x) else f"{int(x)}"),
        "seconds": runs["seconds"].map(lambda x: f"{x:.1f}"),
        "overlap, all": runs["overlap_with_floor"].map(_dash_or("{:.2f}")),
        f"overlap, ≥{v.sens['frequent_likes']} likes": runs["overlap_with_floor_frequent"].map(_dash_or("{:.2f}")),
    })
    return md_table(table, floatfmt=("", "g", "", ".2e", "", "", ".1f", "", ""))


def curves_figure(v: SimpleNamespace) -> plt.Figure:
    """Relative gap to the floor of every run, against the step and against seconds."""
    curves, m = load_arrays("movies_curves.npz"), v.m
    names = [str(n) for n in curves["names"]]
    colors = plt.cm.tab20(np.linspace(0, 1, len(names)))
    fig, axes = plt.subplots(1, 2, figsize=(7, 4.6), sharey=True)
    for k, (name, color) in enumerate(zip(names, colors)):
        losses, times = curves[f"loss_{k:02d}"], curves[f"time_{k:02d}"]
        gap = np.clip((losses - m["floor_loss"]) / m["floor_loss"], 1e-12, None)
        finite = np.isfinite(gap)
        gap = np.where(finite, gap, np.nan)
        for ax, x in zip(axes, (np.arange(len(losses)), times)):
            ax.plot(x, gap, color=color, lw=1.2, label=name)
            if v.runs.loc[k, "diverged"] and finite.any():
                last = np.flatnonzero(finite)[-1]
                ax.plot(x[last], gap[last], "x", color=color, ms=8, mew=2)
    for ax, label in zip(axes, ("step", "seconds")):
        ax.axhline(m["target_gap"], ls=":", color="black", lw=1)
        ax.set(yscale="log", xlabel=label)
    axes[0].set_ylabel("relative gap to the floor")
    axes[1].set_xscale("log")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize="x-small", frameon=False)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    return fig


def recommendation_table(v: SimpleNamespace, title: str, similarity: str = "cosine") -> Markdown:
    """The top-10 list of ``title`` (titles as readers write them)."""
    frame = pd.DataFrame(v.m["recommendation_tables"][title][similarity])
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame["title"] = frame["title"].map(display_title)
    frame["year"] = frame["year"].map(lambda y: "" if y is None or pd.isna(y) else str(int(y)))
    return md_table(frame[["rank", "title", "year", "genres", "likes", "score"]], floatfmt=".3f")


def overlap_by_likes_table(v: SimpleNamespace) -> Markdown:
    """Top-10 overlap between the best run and the floor, by the query's likes."""
    buckets = pd.DataFrame(v.sens["best_vs_floor_by_likes"])
    buckets["likes"] = [f"{lo}" if lo == hi else f"{lo}–{hi}"
                        for lo, hi in zip(buckets["min_likes"], buckets["max_likes"])]
    return md_table(buckets[["likes", "movies", "overlap_best_vs_floor"]].rename(
        columns={"overlap_best_vs_floor": "top-10 overlap"}), floatfmt=".3f")


def sensitivity_figure(v: SimpleNamespace) -> plt.Figure:
    """Pairwise top-10 overlaps between runs, and each run's overlap with the floor against its gap."""
    overlap_frequent = pd.read_csv(results_path("movies_sensitivity_frequent.csv"), index_col=0)
    fig, (left, right) = plt.subplots(2, 1, figsize=(7, 10), gridspec_kw={"height_ratios": [1.5, 1]})
    image = left.imshow(overlap_frequent.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    left.set_xticks(range(len(overlap_frequent)), overlap_frequent.index, rotation=90, fontsize=7)
    left.set_yticks(range(len(overlap_frequent)), overlap_frequent.index, fontsize=7)
    left.grid(False)
    fig.colorbar(image, ax=left, shrink=0.7)
    shown = v.ok_runs.assign(gap_plot=v.ok_runs["gap"].clip(lower=1e-12))
    right.scatter(shown["gap_plot"], shown["overlap_with_floor_frequent"])
    for _, row in shown.iterrows():
        right.annotate(row["name"], (row["gap_plot"], row["overlap_with_floor_frequent"]), fontsize=7,
                       xytext=(2, 2), textcoords="offset points")
    right.set(xscale="log", xlabel="final gap to the floor", ylabel="top-10 overlap with the floor")
    fig.tight_layout()
    return fig


def evaluation_table(v: SimpleNamespace) -> Markdown:
    table = v.eval_table.assign(**{"hit-rate@10": v.eval_table["hit_rate"].map(pct),
                                   "± s.e.": v.eval_table["standard_error"].map(pct)})
    return md_table(table[["method", "hit-rate@10", "± s.e."]])


def explorer():
    """The interactive movie explorer (HTML only), opening on Toy Story."""
    from lib.book.movie_explorer import explorer as build

    return build()
