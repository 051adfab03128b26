"""The performance appendix: values and the summary table from ``results/bench.json``.

Each benchmark part contributes its values under a prefix (``e_`` extraction, ``l_`` linear,
``m_`` embeddings, ``r_`` report); a part the run did not measure reads as "—" in the text.
"""
from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, pct, text_values
from lib.core import artifacts

PART_PREFIXES = ("e_", "g_", "l_", "m_", "r_", "b16_")
PARTS = ("extraction", "engines", "linear", "embeddings", "report")


class Values(SimpleNamespace):
    """The appendix's namespace: a value of a part that was not measured is "—"."""

    def __getattr__(self, name: str):
        if name.startswith(PART_PREFIXES):
            return "—"
        raise AttributeError(name)


def fmt(x, digits: int = 1, unit: str = "") -> str:
    return "—" if x is None else f"{x:,.{digits}f}{unit}"


def _bf16_values(e: dict, goals: dict) -> dict:
    """The optional bfloat16 extraction path, when the CPU had it."""
    b16 = e.get("project_bf16")
    if not b16:
        return dict(b16_text="The bfloat16 path was not timed in this run (the CPU lacks bf16 instructions).")
    b16_ips, b16_speedup = fmt(b16["images_per_s"]), fmt(b16["speedup"], 2, "×")
    b16_meets = "meets" if b16["speedup"] >= goals["extraction_speedup"] else "does not meet"
    return dict(b16_ips=b16_ips, b16_speedup=b16_speedup, b16_text=(
        f"The project also offers a bfloat16 path for processors with bf16 instructions "
        f"(python -m lib features --precision bf16: bfloat16 autocast, eager network). Timed "
        f"alongside the others it runs at {b16_ips} img/s, {b16_speedup} the textbook "
        f"pipeline, which {b16_meets} the {goals['extraction_speedup']:g}× target, at the price of "
        f"features that differ from the fp32 path's by {pct(b16['relative_difference_to_fp32'])} (relative "
        f"norm). The verdict above is for the default fp32 path, whose features are float32-exact."))


def _extraction_values(e: dict, goals: dict) -> dict:
    """Part 1: speed-up, GFLOP/s, differences and where the time goes."""
    tb = e["profile"]["textbook"]["shares"]
    pr = e["profile"]["project"]
    tb_share = {o["op"]: o["share"] for o in e["profile"]["textbook"]["operators"]}
    return dict(
        e_images=e["images"], e_res=e["resolution"], e_batch=e["batch_size"],
        e_speedup=fmt(e["speedup"], 2, "×"), e_fraction=pct(e["matmul_fraction"]),
        e_achieved=fmt(e["achieved_gflops"]), e_matmul=fmt(e["matmul"]["gflops"]),
        e_gflop_image=fmt(e["flops_per_image"] / 1e9, 2), e_rel=pct(e["relative_difference"]),
        e_input=f"{e['input_max_abs_difference'] / e['input_grey_level']:.2f}",
        e_network=f"{e['network_max_abs_difference']:.1e}",
        e_tb_forward=pct(tb["network forward"]), e_tb_data=pct(1 - tb["network forward"]),
        e_tb_convert=pct(tb["ToTensor"] + tb["Normalize"]), e_pr_forward=pct(pr["shares"]["network forward"]),
        e_pr_ops="; ".join(f"{o['op']} {pct(o['share'])}" for o in pr["operators"][:5]),
        e_tb_conv=pct(tb_share.get("aten::mkldnn_convolution", 0.0)),
        e_tb_other=pct(sum(tb_share.get(k, 0.0) for k in ("aten::native_batch_norm", "aten::clamp",
                                                          "aten::fill_", "aten::copy_"))),
        e_load=(e["load_average"]["before"][0], e["load_average"]["after"][0]), **_bf16_values(e, goals))


def _default_row(table: dict) -> dict:
    return next(r for r in table["rows"] if r["engine"] == table["default_engine"])


def _engine_missed(eng: dict, rows: list[dict]) -> str:
    """Which engine targets this run missed, with the conditions it measured them under."""
    missed = [t["measure"] for t in rows if t["part"] == "engines" and not t["met"]]
    if not missed:
        return "All four engine targets were met in this run."
    sgemm = "; ".join(f"{name} {' and '.join(f'{g:.0f}' for g in t['sgemm']['gflops_before_after'])}"
                      for name, t in eng["backbones"].items())
    return (f"Missed in this run: {'; '.join(missed)}. It ran on 2 cores shared with other work: the "
            f"sgemm reference measured {sgemm} GFLOP/s (before and after each table) and the load "
            "averages above exceed the core count, so the engines' ratios move with that load even "
            "though they alternate over the same images.")


def _engine_values(eng: dict) -> dict:
    """The engine table: what the default engine gains per backbone, and the same-run sgemm rate."""
    tables = eng["backbones"]
    lite, rn = tables.get("efficientnet_lite0"), tables.get("resnet18")
    first = next(iter(tables.values()))
    out = dict(g_images=first["images"], g_res=first["resolution"], g_threads=first["threads"],
               g_sgemm=fmt(first["sgemm"]["gflops"]),
               g_diff=f"{max(_default_row(t)['relative_difference_to_torch_eager'] for t in tables.values()):.1e}",
               g_traced="; ".join(f"{name} {r['speedup_over_torch_eager']:.2f}×" for name, t in tables.items()
                                  for r in t["rows"] if r["engine"].startswith("torch traced")) or "not timed",
               g_load="; ".join(f"{name} {t['load_average']['before'][0]:.1f} → "
                                f"{t['load_average']['after'][0]:.1f}"
                                for name, t in tables.items() if t["load_average"]["before"]))
    if lite:
        row = _default_row(lite)
        out.update(g_lite_tb=fmt(row["speedup_over_textbook"], 1, "×"),
                   g_lite_eager=fmt(row["speedup_over_torch_eager"], 1, "×"),
                   g_lite_util=pct(row["sgemm_fraction"]))
    if rn:
        row = _default_row(rn)
        above = ("above 100%: ONNX Runtime's convolutions outran torch's 2048 × 2048 matrix multiply, so that "
                 "rate is a same-run reference here, not this CPU's peak") if row["sgemm_fraction"] > 1 else \
            "the multiply units' rate it approaches"
        out.update(g_rn_eager=fmt(row["speedup_over_torch_eager"], 1, "×"),
                   g_rn_util=pct(row["sgemm_fraction"]), g_rn_above=above,
                   g_rn_weights="pretrained" if rn["pretrained"] else "random")
    return out


def engines_table(v: "Values") -> Markdown:
    """Every engine of every backbone: images/s, ratios, GFLOP/s, share of the same-run sgemm rate."""
    rows = [{"backbone": name, "engine": r["engine"], "img/s": fmt(r["images_per_s"]),
             "× textbook": fmt(r["speedup_over_textbook"], 2, "×"),
             "× torch eager": fmt(r["speedup_over_torch_eager"], 2, "×"),
             "GFLOP/s": fmt(r["gflops"]), "of sgemm": pct(r["sgemm_fraction"]),
             "rel. difference": f"{r['relative_difference_to_torch_eager']:.1e}"}
            for name, table in v.eng["backbones"].items() for r in table["rows"]]
    # numbers are already text in their own formats (1.2e-05 must not become 0.000)
    return md_table(pd.DataFrame(rows), disable_numparse=True)


def _linear_values(lin: dict) -> dict:
    """Part 2: seconds and iterations of both solvers to the common accuracy."""
    first = lin["project"]["trace"][0]
    return dict(
        l_train=lin["n_train"], l_test=lin["n_test"], l_res=lin["resolution"],
        l_target=pct(lin["target_accuracy"], 2), l_final_p=pct(lin["final_accuracy"]["project"], 2),
        l_final_s=pct(lin["final_accuracy"]["sklearn"], 2),
        l_p=fmt(lin["project"]["seconds_to_target"], 2), l_s=fmt(lin["sklearn"]["seconds_to_target"], 2),
        l_it_p=lin["project"]["iterations_to_target"], l_it_s=lin["sklearn"]["iterations_to_target"],
        l_speedup=fmt(lin["speedup"], 1, "×"), l_wd=f"{lin['weight_decay']:g}", l_repeats=lin.get("repeats", 1),
        l_first_cap=first["max_iter"], l_first_s=fmt(first["seconds"], 3),
        l_ms_p=fmt(1000 * lin["seconds_per_iteration"]["project"], 1),
        l_ms_s=fmt(1000 * lin["seconds_per_iteration"]["sklearn"], 1),
        l_ops="; ".join(f"{o['op']} {pct(o['share'])}" for o in lin["project_operators"][:4]))


def _embedding_values(emb: dict) -> dict:
    """Part 3: the project's optimiser against the public recipe."""
    m_best, rec = emb["best_run"], emb["recipe"]
    m_p = emb["project"][m_best]
    m_fastest = emb.get("fastest_run")
    m_fast = emb["project"].get(m_fastest) if m_fastest else None
    return dict(
        m_best=m_best, m_p_s=fmt(m_p["seconds_to_target"], 2), m_p_steps=m_p["steps_to_target"],
        m_rec=rec, m_r_it=rec["iterations"], m_r_s=fmt(rec["seconds"], 1), m_r_gap=pct(rec["gap"], 1),
        m_r_reached=rec["reached"], m_dim=emb["dim"], m_movies=emb["n_movies"],
        m_fastest=m_fastest, m_fast_s=fmt(m_fast["seconds_to_target"], 2) if m_fast else "—",
        m_r_per_it=fmt(rec["seconds_per_iteration"], 3),
        m_speedup_text=f"{'at least ' if emb['speedup_is_lower_bound'] else ''}{fmt(emb['speedup'], 1, '×')}")


def _report_values(rep: dict) -> dict:
    slowest = max(rep["chapters"].items(), key=lambda kv: kv[1]) if rep["chapters"] else ("—", 0.0)
    return dict(r_s=fmt(rep["seconds"], 1), r_slowest=slowest[0], r_slowest_s=fmt(slowest[1], 1))


def data() -> Values:
    """Everything the appendix's table and prose read from ``results/bench.json``."""
    run = artifacts.load_json("bench")
    hw, parts, goals = run["provenance"]["hardware"], run["parts"], run["target_values"]
    e, eng, lin, emb, rep = (parts.get(p) for p in PARTS)
    return Values(
        run=run, cfg=run["provenance"]["config"], goals=goals, e=e, eng=eng, lin=lin, emb=emb, rep=rep,
        cpu=f"{hw['cpu']} ({hw['cpu_count']} cores, {hw['torch_threads']} torch threads)",
        wall_minutes=f"{run['provenance']['wall_time_s'] / 60:.1f}",
        measured=", ".join(parts) if parts else "none",
        verdicts={part: verdict(run, part) for part in PARTS},
        **(_extraction_values(e, goals) if e else {}), **(_engine_values(eng) if eng else {}),
        g_missed=_engine_missed(eng, run["targets"]) if eng else "—",
        **(_linear_values(lin) if lin else {}),
        **(_embedding_values(emb) if emb else {}), **(_report_values(rep) if rep else {}))


# What the appendix's prose quotes, formatted as printed ("—" for a part the run did not measure).
BenchValues = text_values("BenchValues", (
    # the run
    "cpu measured wall_minutes bench_images bench_linear_train bench_linear_test "
    # verdicts, one per part
    "extraction_verdict engines_verdict linear_verdict embeddings_verdict report_verdict "
    # part 1, feature extraction
    "e_images e_res e_batch e_tb_forward e_tb_data e_tb_convert e_tb_conv e_tb_other e_speedup "
    "e_pr_forward e_pr_ops e_rel e_network e_input b16_note e_gflop_image e_achieved e_matmul e_fraction "
    "e_load "
    # the engines
    "g_images g_res g_rn_weights g_threads g_sgemm g_lite_tb g_lite_eager g_lite_util g_rn_eager "
    "g_rn_util g_rn_above g_diff g_traced g_load g_missed "
    # part 2, logistic regression
    "l_res l_train l_test l_wd l_final_p l_final_s l_target l_p l_it_p l_s l_it_s l_speedup l_repeats "
    "l_ms_p l_ms_s l_ops l_first_cap l_first_s "
    # part 3, movie embeddings
    "m_movies m_dim m_best m_p_s m_p_steps m_fastest m_fast_s m_r_per_it m_r_it m_r_s m_r_gap "
    "m_speedup_text "
    # part 4, the report
    "r_s r_slowest r_slowest_s"
))


def values(d: Values) -> BenchValues:
    """The prose's values, from ``data()``: most are read by name, a few are derived here."""
    derived = dict(
        bench_images=str(d.cfg["images"]), bench_linear_train=str(d.cfg["linear_train"]),
        bench_linear_test=str(d.cfg["linear_test"]), b16_note=d.b16_text if d.e else "",
        **{f"{part}_verdict": verdict_sentence(d.run, part) for part in PARTS})
    named = [f.name for f in fields(BenchValues) if f.name not in derived]
    return BenchValues(**{name: str(getattr(d, name)) for name in named}, **derived)


def verdict(run: dict, part: str) -> str:
    """'met'/'missed' for each target of ``part`` (joined), or that it was not measured."""
    rows = [t for t in run["targets"] if t["part"] == part]
    if not rows:
        return "not measured in this run"
    return " and ".join("met" if t["met"] else "missed" for t in rows)


def verdict_sentence(run: dict, part: str) -> str:
    """The targets of ``part`` as one sentence: which were met and which missed, by name."""
    rows = [t for t in run["targets"] if t["part"] == part]
    if not rows:
        return "Not measured in this run."
    met = [t["measure"] for t in rows if t["met"]]
    missed = [t["measure"] for t in rows if not t["met"]]
    if len(rows) == 1:
        return f"Its target ({rows[0]['measure']}) was {'met' if met else 'missed'}."
    if not (met and missed):
        return f"All {len(rows)} targets were {'met' if met else 'missed'}."
    return (f"Of its {len(rows)} targets, {len(met)} {'was' if len(met) == 1 else 'were'} met and "
            f"{len(missed)} missed: {'; '.join(missed)}.")


def _extraction_rows(v: Values) -> list[dict]:
    """The table rows of part 1: speed-up (fp32, and bf16 if timed) and GFLOP/s share."""
    e, goals, met = v.e, v.goals, v.verdicts["extraction"]
    target = f"≥ {goals['extraction_speedup']:g}×"
    rows = [{"part": f"feature extraction ({v.e_images} images, {v.e_res} px)",
             "baseline": f"{fmt(e['textbook']['images_per_s'])} img/s",
             "project": f"{fmt(e['project']['images_per_s'])} img/s", "ratio or value": v.e_speedup,
             "target": target, "met": met.split(" and ")[0]}]
    if e.get("project_bf16"):
        rows.append({"part": "  same, project with --precision bf16",
                     "baseline": f"{fmt(e['textbook']['images_per_s'])} img/s",
                     "project": f"{v.b16_ips} img/s", "ratio or value": v.b16_speedup, "target": target,
                     "met": ("met (option)" if e["project_bf16"]["speedup"] >= goals["extraction_speedup"]
                             else "missed (option)")})
    rows.append({"part": "extraction GFLOP/s vs matmul", "baseline": f"{v.e_matmul} GFLOP/s (matmul)",
                 "project": f"{v.e_achieved} GFLOP/s", "ratio or value": v.e_fraction,
                 "target": f"≥ {pct(goals['extraction_matmul_fraction'], 0)}", "met": met.split(" and ")[-1]})
    return rows


def bench_table(v: Values) -> Markdown:
    """Each fast path against its baseline: figures, ratio, target, verdict."""
    goals, rows = v.goals, []
    if v.e:
        rows += _extraction_rows(v)
    for t in (t for t in v.run["targets"] if t["part"] == "engines"):
        value = pct(t["value"]) if t["goal"].endswith("%") else fmt(t["value"], 2, "×")
        rows.append({"part": t["measure"], "baseline": "same run", "project": "ONNX Runtime",
                     "ratio or value": value, "target": t["goal"].replace(">=", "≥").replace("x", "×"),
                     "met": "met" if t["met"] else "missed"})
    if v.lin:
        rows.append({"part": f"logistic regression to {v.l_target} ({v.l_train} train images)",
                     "baseline": f"{v.l_s} s (scikit-learn)", "project": f"{v.l_p} s",
                     "ratio or value": v.l_speedup, "target": f"≥ {goals['linear_speedup']:g}×",
                     "met": v.verdicts["linear"]})
    if v.emb:
        recipe = (f"{fmt(v.m_rec['target_seconds'], 1)} s" if v.m_r_reached
                  else f"not within 0.5% after {v.m_r_it} it. ({v.m_r_s} s)")
        rows.append({"part": "embeddings to 0.5% of the floor", "baseline": recipe,
                     "project": f"{v.m_p_s} s ({v.m_best})", "ratio or value": v.m_speedup_text,
                     "target": f"≥ {goals['embeddings_speedup']:g}× or never", "met": v.verdicts["embeddings"]})
    if v.rep:
        rows.append({"part": "report: python -m lib notebooks", "baseline": "—", "project": f"{v.r_s} s",
                     "ratio or value": f"{v.r_s} s", "target": f"≤ {goals['report_seconds']:g} s",
                     "met": v.verdicts["report"]})
    return md_table(pd.DataFrame(rows, columns=["part", "baseline", "project", "ratio or value", "target", "met"]))
