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

from lib.book import movie_optimisers as optimisers
from lib.book.format import TeX, and_join, md_table, pct, text_values
from lib.book.movie_explorer import explorer  # noqa: F401  (the chapter's interactive explorer)
from lib.core.artifacts import load_arrays, load_csv, load_json
from lib.core.stats import binomial_se
from lib.movies.titles import display_title


def data() -> SimpleNamespace:
    """What the chapter's tables and figures draw (and ``values`` formats), read from the frozen artifacts."""
    m = load_json("movies")
    o = optimisers.data(m)
    ok_runs = o.runs[~o.runs["diverged"] & (o.runs["init"] == "normal")]  # converged from the random start
    floor_lists = m["floor_query_lists"]
    same = {t: ok_runs[ok_runs["query_lists"].map(lambda q, t=t: q[t] == floor_lists[t])]["name"].tolist()
            for t in floor_lists}
    differing = ok_runs[~ok_runs["name"].isin(set.intersection(*map(set, same.values())))].sort_values("gap")
    dims = pd.DataFrame(m["dims"])
    best_dim_row = dims.loc[dims["validation_hit_rate"].idxmax()]
    queries = m["queries"]
    return SimpleNamespace(
        m=m, o=o, alt=m["alternative"], cooc=m["stats"]["cooccurrence"], sens=m["sensitivity"],
        threshold=m["liked_threshold"], queries=queries,
        **dict(zip(("apollo", "toy", "home"), (queries[q] for q in ("Apollo 13", "Toy Story", "Home Alone")))),
        ok_runs=ok_runs, same_lists=same,
        shown_runs=differing.iloc[[0, len(differing) // 2, -1]] if len(differing) > 3 else differing,
        dims=dims, dim_row=dims.loc[dims["dim"] == m["dim"]].iloc[0], best_dim_row=best_dim_row,
        se_best=binomial_se(best_dim_row["validation_hit_rate"], m["validation_users"]))


# Every value the chapter's prose quotes, formatted as printed (prose does no arithmetic).
MovieValues = text_values("MovieValues", (
    # ratings and likes
    "threshold mean_rating median_rating share_liked user_mean_median users_mean_at_least_4 n_users "
    "users_mean_below_3 alt_likes_change alt_movies_change alt_common alt_titles n_movies n_movies_rated "
    # co-occurrence
    "n_pairs cooc_nonzero_share cooc_median cooc_p99 cooc_max top_pair_a top_pair_b top_pair_count "
    # the reference solution V*
    "dim floor_iterations floor_loss floor_grad_norm floor_unexplained best_gap gram_distance "
    "gram_distance_short "
    # the choice of d
    "best_dim_hit_rate best_dim se_best n_val dim_hit_rate dim_explained "
    # the optimiser runs' settings
    "seed init_std start_ratio iterations stall_tol stall_steps divergence_factor lbfgs_history "
    # cosine against dot product
    "norm_likes_spearman dot_distinct dot_top100 cosine_distinct cosine_top100 apollo toy home dot_head "
    # sensitivity to the optimiser
    "n_ok_runs same_counts always_same_text mixed_text best_overlap frequent_movies frequent_likes "
    "best_overlap_frequent rho "
    # the hold-out evaluation
    "eval_users train_likes best_run train_run_gap rate_cosine rate_dot rate_cooccurrence rate_popular "
    "se_users "
    # validation (choice of d) against test hit-rate
    "se_test val_test_diff val_test_z n_dims "
    # the answer: what the lists start with, and how many movies the runs' lists share with V*'s
    "apollo_head toy_head home_head n_share9 share_min share_min_runs share_min_query share_min_entered "
    "low_share_text low_share_runs"
), init_std=TeX)


def values(d: SimpleNamespace) -> MovieValues:
    """The prose's values, from ``data()``."""
    return MovieValues(**_data_texts(d), **_floor_texts(d), **_similarity_texts(d), **_sensitivity_texts(d),
                       **_evaluation_texts(d), **_answer_texts(d))


def shared_with_reference(d: SimpleNamespace) -> pd.DataFrame:
    """For every run that converged from the random start and each query: how many of its 10 movies
    V*'s list also has (set overlap, order ignored), and the movies that entered its list."""
    rows = []
    for _, run in d.ok_runs.iterrows():
        for title, reference in d.m["floor_query_lists"].items():
            ranked = run["query_lists"][title]
            rows.append({"run": run["name"], "gap": run["gap"], "query": title,
                         "shared": len(set(ranked) & set(reference)),
                         "entered": [t for t in ranked if t not in reference]})
    return pd.DataFrame(rows)


def _answer_texts(d: SimpleNamespace) -> dict[str, str]:
    """The first three movies of each list; how many runs' lists share 9 or 10 movies with V*'s for
    all three queries; the runs that share fewer (with their final gaps), and the movies that enter
    the list that changes most."""
    shared = shared_with_reference(d)
    per_run = shared.groupby("run")["shared"].min()
    low = shared[shared["run"].isin(per_run[per_run < 9].index)]
    low_runs, low_names = [], []
    for run, rows in sorted(low.groupby("run"), key=lambda item: -item[1]["gap"].iloc[0]):
        low_names.append(run)
        counts = rows.set_index("query").loc[[d.apollo, d.toy, d.home], "shared"]
        low_runs.append(f"{run} ({and_join([str(n) for n in counts])} of 10; final gap {rows['gap'].iloc[0]:.1e})")
    worst = shared.sort_values(["shared", "gap"], ascending=[True, False]).iloc[0]
    head = lambda title: ", ".join(display_title(t) for t in d.m["recommendations"][title][:3])  # noqa: E731
    return dict(apollo_head=head(d.apollo), toy_head=head(d.toy), home_head=head(d.home),
                n_share9=str(int((per_run >= 9).sum())), share_min=str(int(worst["shared"])),
                share_min_runs=str(worst["run"]), share_min_query=display_title(worst["query"]),
                share_min_entered=", ".join(display_title(t) for t in worst["entered"]),
                low_share_text=and_join(low_runs) or "none", low_share_runs=and_join(low_names) or "none")


def _data_texts(d: SimpleNamespace) -> dict[str, str]:
    """Ratings, likes, the alternative definition and the co-occurrence counts."""
    ratings, main, alt, cooc = d.m["stats"]["ratings"], d.alt["main"], d.alt["alternative"], d.cooc
    alt_lists = {title: r for title, r in d.alt["recommendations"].items() if r}
    top_pair = cooc["top_pairs"][0]
    share_liked = sum(v for k, v in ratings["rating_shares"].items() if float(k) >= d.threshold)
    return dict(
        threshold=f"{d.threshold:g}", mean_rating=f"{ratings['mean_rating']:.2f}",
        median_rating=f"{ratings['median_rating']:g}", share_liked=pct(share_liked),
        user_mean_median=f"{ratings['user_mean_median']:.2f}",
        users_mean_at_least_4=str(ratings["users_mean_at_least_4"]), n_users=str(ratings["n_users"]),
        users_mean_below_3=str(ratings["users_mean_below_3"]),
        alt_likes_change=f"{alt['n_likes'] / main['n_likes'] - 1:+.0%}",
        alt_movies_change=f"{alt['n_movies'] - main['n_movies']:+,}",
        alt_common=", ".join(f"{r['common_with_main']}/10" for r in alt_lists.values()),
        alt_titles=", ".join(display_title(t) for t in alt_lists),
        n_movies=f"{d.m['n_movies']:,}", n_movies_rated=f"{d.m['stats']['likes']['n_movies_rated']:,}",
        n_pairs=f"{cooc['n_pairs']:,}", cooc_nonzero_share=pct(cooc["nonzero_fraction"]),
        cooc_median=f"{cooc['nonzero_median']:g}", cooc_p99=f"{cooc['nonzero_quantiles']['0.99']:g}",
        cooc_max=f"{cooc['max']:g}", top_pair_a=display_title(top_pair["a"]),
        top_pair_b=display_title(top_pair["b"]), top_pair_count=str(top_pair["count"]))


def _floor_texts(d: SimpleNamespace) -> dict[str, str]:
    """The reference solution V*, the choice of its dimension d, and how every optimiser run starts and stops."""
    m, floor, config = d.m, d.m["floor"], d.m["provenance"]["config"]
    curve0 = float(load_arrays("movies_curves.npz")["loss_00"][0])
    return dict(
        dim=str(m["dim"]), floor_iterations=str(floor["iterations"]), floor_loss=f"{m['floor_loss']:,.0f}",
        floor_grad_norm=f"{floor['grad_norm']:.1e}",
        floor_unexplained=pct(m["floor_loss"] / floor["offdiag_sq_norm"], 2),
        best_gap=f"{d.o.best['gap']:+.1e}", gram_distance=f"{d.sens['best_vs_floor_gram_distance']:.1e}",
        gram_distance_short=f"{d.sens['best_vs_floor_gram_distance']:.0e}",
        best_dim_hit_rate=pct(d.best_dim_row["validation_hit_rate"]), best_dim=str(int(d.best_dim_row["dim"])),
        se_best=pct(d.se_best), n_val=str(m["validation_users"]),
        dim_hit_rate=pct(d.dim_row["validation_hit_rate"]), dim_explained=pct(d.dim_row["explained"]),
        seed=str(m["provenance"]["seed"]), init_std=TeX(config["init_std"]),
        start_ratio=f"{curve0 / m['floor_loss']:.0f}", iterations=str(m["iterations"]),
        stall_tol=f"{config['stall_tol']:g}", stall_steps=str(config["stall_steps"]),
        divergence_factor=f"{config['divergence_factor']:g}", lbfgs_history=str(config["lbfgs_history"]))


def _similarity_texts(d: SimpleNamespace) -> dict[str, str]:
    """Cosine against the dot product, and the three query titles as readers see them."""
    sim, dot_list = d.m["similarity_comparison"], d.m["recommendation_tables"][d.apollo]["dot"]
    return dict(
        norm_likes_spearman=f"{sim['norm_likes_spearman']:.2f}", dot_distinct=f"{sim['dot']['distinct_movies']:,}",
        dot_top100=pct(sim["dot"]["share_top100"]), cosine_distinct=f"{sim['cosine']['distinct_movies']:,}",
        cosine_top100=pct(sim["cosine"]["share_top100"]),
        apollo=display_title(d.apollo), toy=display_title(d.toy), home=display_title(d.home),
        dot_head=", ".join(display_title(row["title"]) for row in dot_list[:3]))


def _sensitivity_texts(d: SimpleNamespace) -> dict[str, str]:
    """Whether the runs' lists match V*'s, in words, and how the overlap follows the final gap;
    mixed_text: a pair of runs where the final gap misleads (empty when it does not)."""
    ok, best, best_run = d.ok_runs, d.o.best, d.m["best_run"]
    always_same = [n for n in ok["name"] if all(n in names for names in d.same_lists.values())]
    others = [n for n in always_same if n != best_run]
    same_far = ok[ok["name"].isin(others)].sort_values("gap").tail(1)
    none_near = ok[~ok["name"].isin(set().union(*map(set, d.same_lists.values())))].sort_values("gap").head(1)
    mixed_text = ""
    if len(same_far) and len(none_near) and none_near["gap"].iloc[0] < same_far["gap"].iloc[0]:
        mixed_text = (f"The final gap is only a rough guide: {same_far['name'].iloc[0]} (gap "
                      f"{same_far['gap'].iloc[0]:.1e}) reproduces all three lists, {none_near['name'].iloc[0]} "
                      f"(gap {none_near['gap'].iloc[0]:.1e}) none of them.")
    return dict(
        n_ok_runs=str(len(ok)),
        same_counts=", ".join(str(len(d.same_lists[t])) for t in (d.apollo, d.toy, d.home)),
        always_same_text=f"{len(always_same)} ({', '.join(always_same)})" if others else f"only {best_run}",
        mixed_text=mixed_text, best_overlap=f"{best['overlap_with_floor']:.2f}",
        frequent_movies=f"{d.sens['frequent_movies']:,}", frequent_likes=str(d.sens["frequent_likes"]),
        best_overlap_frequent=f"{best['overlap_with_floor_frequent']:.3f}",
        rho=f"{ok['gap'].rank().corr(ok['overlap_with_floor_frequent'].rank()):.2f}")


def _evaluation_texts(d: SimpleNamespace) -> dict[str, str]:
    """The hold-out hit-rates (se_users: how many users one standard error is), and why the validation
    hit-rate at the chosen d exceeds the test hit-rate: the same users, another random held-out like,
    and d picked as the best of several on the validation likes."""
    evaluation = d.m["evaluation"]
    n, table = evaluation["n_users"], pd.DataFrame(evaluation["methods"])
    rate = dict(zip(table["method"], table["hit_rate"]))
    cosine = next(k for k in rate if k.startswith("embeddings, cosine (") and "floor" not in k)
    dot = next(k for k in rate if k.startswith("embeddings, dot"))
    val, test = d.dim_row["validation_hit_rate"], rate[cosine]
    se_test = dict(zip(table["method"], table["standard_error"]))[cosine]
    return dict(
        eval_users=str(n), train_likes=f"{evaluation['train_likes']:,}",
        best_run=str(d.m["best_run"]), train_run_gap=f"{evaluation['train_run_gap']:.1e}",
        rate_cosine=pct(test), rate_dot=pct(rate[dot]),
        rate_cooccurrence=pct(rate["co-occurrence counts"]), rate_popular=pct(rate["most popular"]),
        se_users=str(round(se_test * n)), se_test=pct(se_test), val_test_diff=f"{100 * (val - test):.1f}",
        val_test_z=f"{(val - test) / math.hypot(binomial_se(val, n), se_test):.1f}", n_dims=str(len(d.dims)))


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
    fig, ax = plt.subplots(figsize=(7, 2.2))
    ax.scatter(values_[keep], counts[keep], s=8)
    ax.set(xscale="log", yscale="log", xlabel="users who like both movies, $X_{ij}$",
           ylabel="number of movie pairs")
    return fig


def pairs_table(v: SimpleNamespace) -> Markdown:
    pairs = pd.DataFrame(v.cooc["top_pairs"]).head(5)
    pairs["a"], pairs["b"] = pairs["a"].map(display_title), pairs["b"].map(display_title)
    return md_table(pairs.rename(columns={"a": "movie", "b": "liked together with",
                                          "count": "users who like both"}))


def dim_figure(v: SimpleNamespace) -> plt.Figure:
    """Explained share and validation hit-rate against d, the chosen d circled."""
    dims, m = v.dims, v.m
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 2.6))
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


def _rank_cell(rank: int | None, expected: int | None) -> str:
    """A movie's rank in one list; bold where it differs from its rank in the best run's list."""
    cell = "—" if rank is None else str(rank)
    return cell if rank == expected else f"**{cell}**"


def query_table(v: SimpleNamespace, title: str) -> Markdown:
    """The best run's top-10 for ``title`` beside the reference solution's and the shown runs' lists:
    each column gives the movie's rank in that list (bold where it differs; — = not in the top 10);
    the last row counts the movies that enter each list."""
    catalog = load_csv("movies_catalog.csv").set_index("title")["likes"]
    best = v.m["recommendations"][title]
    by_name = v.o.runs.set_index("name")
    lists = {"$V^\\star$": v.m["floor_query_lists"][title]}
    lists.update({f"{n.split()[0]} {n.split('=')[1]}": by_name.loc[n, "query_lists"][title]
                  for n in v.shown_runs["name"]})
    rows = []
    for position, movie in enumerate(best, 1):
        row = {"rank": str(position), "movie": display_title(movie), "likes": str(int(catalog[movie]))}
        row.update({name: _rank_cell(ranked.index(movie) + 1 if movie in ranked else None, position)
                    for name, ranked in lists.items()})
        rows.append(row)
    entered = {name: sum(t not in best for t in ranked) for name, ranked in lists.items()}
    rows.append({"rank": "", "movie": "*other movies in the list*", "likes": "",
                 **{name: f"**{n}**" if n else "0" for name, n in entered.items()}})
    return md_table(pd.DataFrame(rows), disable_numparse=True)


def overlap_by_likes_table(v: SimpleNamespace) -> Markdown:
    """Top-10 overlap between the best run and the floor, by the query's likes."""
    buckets = pd.DataFrame(v.sens["best_vs_floor_by_likes"])
    buckets["likes"] = [f"{lo}" if lo == hi else f"{lo}–{hi}"
                        for lo, hi in zip(buckets["min_likes"], buckets["max_likes"])]
    return md_table(buckets[["likes", "movies", "overlap_best_vs_floor"]].rename(
        columns={"overlap_best_vs_floor": "top-10 overlap"}), floatfmt=".3f")


def check_cost_listing(cost_and_gradient) -> None:
    """The chapter's listing of c and its gradient agrees with the library (raises if not)."""
    import scipy.sparse as sp
    import torch

    from lib.movies.objective import LikesObjective

    L = sp.random(30, 12, density=0.3, random_state=0, data_rvs=np.ones, format="csr")
    V = np.random.default_rng(0).normal(size=(12, 3))
    c, grad = cost_and_gradient(V, L)
    expected_c, expected_grad = LikesObjective(L).value_and_grad(torch.from_numpy(V))
    assert np.isclose(c, expected_c, rtol=1e-10) and np.allclose(grad, expected_grad.numpy(), rtol=1e-9, atol=1e-9)


def check_recommend_listing(recommend, v: SimpleNamespace) -> None:
    """The chapter's listing of the recommendation gives the library's lists for the three queries."""
    from lib.movies.recommend import load_frozen, top_k

    frozen = load_frozen()
    for title in v.queries.values():
        i = frozen.resolve(title)
        assert list(recommend(frozen.embeddings, i)) == list(top_k(frozen.embeddings, i, 10)[0]), title
