"""Chapter 3's optimiser comparison: the runs table, the loss curves, and the curvature analysis
that explains them (from ``results/movies.json``, ``movies_curves.npz``, ``movies_hessian.json``
and ``movies_decay.json``)."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, text_values
from lib.core.artifacts import load_arrays, load_json

PANELS = ("sgd", "momentum", "adam", "rmsprop", "adagrad", "lbfgs")


def gap_text(row) -> str:
    """A run's final relative gap to the floor as shown in the text and the runs table."""
    if row["diverged"]:
        return "diverged"
    return "< 1e-10" if abs(row["gap"]) < 1e-10 else f"{row['gap']:.2e}"


def data(m: dict) -> SimpleNamespace:
    """The runs, the best of them, and the curvature analysis that explains them."""
    runs = pd.DataFrame(m["runs"])
    runs["gap"] = runs["gap"].astype(float)
    decayed = pd.DataFrame(load_json("movies_decay")["runs"]).merge(runs[["name", "gap"]], on="name")
    return SimpleNamespace(runs=runs, dim=m["dim"], target_gap=m["target_gap"], decayed=decayed,
                           best=runs.loc[runs["name"] == m["best_run"]].iloc[0], hess=load_json("movies_hessian"))


# What the prose says about the optimiser runs and the curvature, formatted as printed.
OptimiserValues = text_values("OptimiserValues", (
    # the runs
    "n_reached n_within drifted_names drifted_gaps fastest_text best_name best_steps best_evaluations "
    "best_seconds diverged_names zero_gap "
    # the closest each family of runs ended to c*, from the random start
    "sgd_best_gap momentum_best_gap adaptive_gap_min adaptive_gap_max decay_text "
    # the curvature at V* and the learning-rate limits
    "lambda_max predicted_lambda_max top_eigenvalue second_eigenvalue momentum near_std sgd_fails "
    "sgd_fails_outcome momentum_fails momentum_stable momentum_stable_outcome "
    # the slow modes
    "predicted_slow eigengap lambda_d slow_curvature condition sgd_stable slow_steps"
))


def values(o: SimpleNamespace) -> OptimiserValues:
    """The prose's values, from ``data()``."""
    return OptimiserValues(**_run_texts(o), **_curvature_texts(o))


def _run_texts(o: SimpleNamespace) -> dict[str, str]:
    """Which runs reached the 0.5% band (and stayed), the best run, the diverged ones, the start at
    zero; the smallest final gap of SGD and of momentum, and the range of the adaptive methods' gaps
    (runs from the random start that did not diverge)."""
    runs, best, ok = o.runs, o.best, ~o.runs["diverged"]
    reached = runs[ok & runs["target_step"].notna()]
    within = runs[ok & (runs["gap"] <= o.target_gap)]
    drifted = reached[~reached["name"].isin(within["name"])]
    normal = runs[ok & (runs["init"] == "normal")]
    gap = lambda names: normal[normal["optimizer"].isin(names)]["gap"]  # noqa: E731
    adaptive = gap(("adam", "rmsprop", "adagrad"))
    return dict(
        n_reached=str(len(reached)), n_within=str(len(within)), drifted_names=" and ".join(drifted["name"]),
        drifted_gaps=", ".join(f"{g:.1e}" for g in drifted["gap"]),
        fastest_text=", ".join(f"{r['name']} ({r['target_seconds']:.1f} s)"
                               for _, r in reached.nsmallest(3, "target_seconds").iterrows()),
        best_name=str(best["name"]), best_steps=str(int(best["steps"])),
        best_evaluations=str(int(best["evaluations"])), best_seconds=f"{best['seconds']:.0f}",
        diverged_names=" and ".join(runs[~ok]["name"]),
        zero_gap=f"{runs[runs['init'] == 'zeros']['gap'].iloc[0]:.1f}",
        sgd_best_gap=f"{gap(('sgd',)).min():.1e}", momentum_best_gap=f"{gap(('momentum',)).min():.1e}",
        adaptive_gap_min=f"{adaptive.min():.1e}", adaptive_gap_max=f"{adaptive.max():.1e}",
        decay_text=_decay_text(o.decayed))


def _curvature_texts(o: SimpleNamespace) -> dict[str, str]:
    """The Hessian's top eigenvalue, the learning-rate limits observed from the random start, and the
    slowest directions that matter, with how many SGD steps they need."""
    hess, random = o.hess, o.hess["observed_limits"]["random"]
    sgd_stable = hess["observed_limits"]["near the floor"]["sgd"]["stable_max"]
    return dict(
        lambda_max=f"{hess['lambda_max']:,.0f}", predicted_lambda_max=f"{hess['predicted_lambda_max']:,.0f}",
        top_eigenvalue=f"{hess['reduced_top'][0]:,.0f}", second_eigenvalue=f"{hess['reduced_top'][1]:,.0f}",
        momentum=f"{hess['momentum']:g}", near_std=f"{hess['provenance']['config']['curvature_near_std']:g}",
        sgd_fails=f"{random['sgd']['fails_min']:g}",
        sgd_fails_outcome=sweep_gap(o, "random", "sgd", random["sgd"]["fails_min"]),
        momentum_fails=f"{random['momentum']['fails_min']:g}",
        momentum_stable=f"{random['momentum']['stable_max']:g}",
        momentum_stable_outcome=sweep_gap(o, "random", "momentum", random["momentum"]["stable_max"]),
        predicted_slow=f"{hess['predicted_slow']:.1f}", eigengap=f"{hess['eigengap']:.2f}",
        lambda_d=f"{hess['reduced_around_d'][str(o.dim)]:.1f}",
        slow_curvature=f"{hess['slow_mode_curvature']:.2f}", condition=f"{hess['condition']:,.0f}",
        sgd_stable=f"{sgd_stable:g}", slow_steps=f"{1 / (sgd_stable * hess['slow_mode_curvature']):,.0f}")


def _decay_text(decayed: pd.DataFrame) -> str:
    """Constant against cosine-decayed learning rate, in words: which runs end closer, which further."""
    closer = decayed["final_gap"] < decayed["gap"]
    moves = lambda rows: ", ".join(f"{r['name']} from {r['gap']:.1e} to {r['final_gap']:.1e}"  # noqa: E731
                                   for _, r in rows.iterrows())
    text = f"it brings {moves(decayed[closer])}"
    if (~closer).any():
        text += f", but takes {moves(decayed[~closer])}, further away"
    return text


def runs_table(o: SimpleNamespace) -> Markdown:
    """Every optimiser run: where it ended, how long it took, when it first came within 0.5%."""
    runs = o.runs
    table = pd.DataFrame({
        "optimiser": runs["optimizer"] + np.where(runs["init"] == "zeros", " (V₀ = 0)", ""),
        "lr": runs["lr"].map(lambda x: f"{x:g}"),
        "final gap": runs.apply(gap_text, axis=1),
        "steps": runs["steps"].astype(str) + np.where(runs["evaluations"] != runs["steps"],
                                                    " (" + runs["evaluations"].astype(str) + " evals)", ""),
        "first within 0.5%": runs.apply(lambda r: "—" if pd.isna(r["target_step"]) else
                                        f"step {int(r['target_step'])}, {r['target_seconds']:.1f} s", axis=1),
        "seconds": runs["seconds"].map(lambda x: f"{x:.1f}"),
    })
    return md_table(table, disable_numparse=True)


GAP_FLOOR = 1e-10   # relative gaps below this (L-BFGS at c*, to rounding) are drawn on the axis' floor
GAP_TOP = 1e3       # diverged runs are drawn up to here, then marked with a cross


def relative_gap(loss: np.ndarray, floor_loss: float) -> np.ndarray:
    """(c - c*)/c* per step, clipped to [GAP_FLOOR, GAP_TOP] for a log axis (NaN where c is not finite)."""
    gap = (np.asarray(loss, dtype=np.float64) - floor_loss) / floor_loss
    return np.where(np.isfinite(gap), np.clip(gap, GAP_FLOOR, GAP_TOP), np.nan)


def curves_figure(o: SimpleNamespace, floor_loss: float, target_gap: float) -> plt.Figure:
    """The relative gap (c - c*)/c* against the step on a log axis, one panel per optimiser, one line
    per learning rate, legends above the panels (outside the data); L-BFGS also against cost
    evaluations (its line search evaluates c several times a step)."""
    curves = load_arrays("movies_curves.npz")
    fig, axes = plt.subplots(2, 3, figsize=(7, 5.4), sharey=True)
    fig.subplots_adjust(left=0.11, right=0.98, top=0.87, bottom=0.09, wspace=0.12, hspace=0.85)
    for ax, optimizer in zip(axes.flat, PANELS):
        rows = o.runs[o.runs["optimizer"] == optimizer]
        for color, (k, row) in zip(plt.cm.viridis(np.linspace(0, 0.8, len(rows))), rows.iterrows()):
            gap = relative_gap(curves[f"loss_{k:02d}"], floor_loss)
            zero = row["init"] == "zeros"
            ax.plot(np.arange(len(gap)), gap, ":" if zero else "-", color="grey" if zero else color, lw=1.3,
                    label=f"lr {row['lr']:g}" + (", $V_0=0$" if zero else ""))
            if optimizer == "lbfgs":
                ax.plot(curves[f"evals_{k:02d}"], gap, "--", color="tab:orange", lw=1.3, label="per evaluation")
            if row["diverged"]:
                last = np.flatnonzero(np.isfinite(gap))[-1]
                ax.plot(last, gap[last], "x", color=color, ms=7, mew=2)
        ax.axhline(target_gap, color="black", ls=":", lw=0.8)
        ax.set(yscale="log", ylim=(GAP_FLOOR / 3, GAP_TOP * 3),
               xlabel="step or evaluation" if optimizer == "lbfgs" else "step")
        ax.xaxis.set_major_locator(plt.MaxNLocator(3))
        ax.legend(title=optimizer, fontsize=7.5, title_fontsize=8, ncol=2, loc="lower left",
                  bbox_to_anchor=(0, 1.0), frameon=False, borderaxespad=0.2, handlelength=1.5,
                  columnspacing=0.8, alignment="left")
    for ax in axes[:, 0]:
        ax.set_ylabel("$(c - c^\\star)/c^\\star$")
    return fig


def _bracket(entry: dict) -> str:
    lo, hi = entry["stable_max"], entry["fails_min"]
    return f"{lo:g} – {hi:g}" if lo and hi else f"> {lo:g}" if lo else f"< {hi:g}"


def limits_table(o: SimpleNamespace) -> Markdown:
    """Predicted learning-rate limits against the largest converging / smallest failing rate observed."""
    hess, observed = o.hess, o.hess["observed_limits"]
    formulas = {"sgd": "$2/\\lambda_{\\max}$",
                "momentum": f"$2(1+\\beta)/\\lambda_{{\\max}}$, $\\beta = {hess['momentum']:g}$"}
    rows = [{"optimiser": optimizer, "predicted limit": f"{hess['predicted_limits'][optimizer]:.2e} ({formula})",
             "observed, start near $V^\\star$": _bracket(observed["near the floor"][optimizer]),
             "observed, random start": _bracket(observed["random"][optimizer])}
            for optimizer, formula in formulas.items()]
    return md_table(pd.DataFrame(rows), disable_numparse=True)


def sweep_gap(o: SimpleNamespace, start: str, optimizer: str, lr: float) -> str:
    """How a sweep run ended, in words."""
    row = next(r for r in o.hess["sweep"]
               if r["start"] == start and r["optimizer"] == optimizer and r["lr"] == lr)
    return "diverged" if row["diverged"] else f"ends at a gap of {row['final_gap']:.2g}"
