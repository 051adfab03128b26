"""Chapter 1 (pretrained features + logistic regression): its values, figures and tables.

The answer is the probe on features extracted on the 2-core CPU (``results/features_cpu_onnx*``); the
resolution sweep recorded on a lent GPU (``results/features.json``) is an extra."""
from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from lib.book.format import and_join, md_table, minutes, pct, text_values
from lib.book import gallery
from lib.book.gallery_browser import browser
from lib.book.widgets import Html
from lib.cifar.linear import ProbeConfig
from lib.core import artifacts
from lib.core.stats import binomial_se
from lib.core.data import CIFAR_CLASSES

PROBE = "features_cpu_onnx"  # the answer: re-derivable on a 2-core CPU
GPU_SWEEP = "features"       # extra: the resolution sweep, recorded on a lent GPU
# ImageNet-1k top-1 of EfficientNet-Lite0's weights, as its release publishes it [@efficientnetlite2020]
# (ResNet18's comes from torchvision's own metadata).
LITE0_IMAGENET_TOP1 = 0.751


def _setup_values(run: dict, cfg: dict) -> dict:
    """The setup section: backbone, data, resolution, classifier."""
    full = run["full_dataset"]
    subset_text = ("the full training set (50,000 images) and the full test set (10,000 images)" if full else
                   f"a development subset only: the first {cfg['limit_train'] or 50000:,} training and the first "
                   f"{cfg['limit_test'] or 10000:,} test images")
    return dict(
        resolution=run["resolution"], feature_dim=run["feature_dim"], feature_layer=run["feature_layer"],
        input_convention=run["input_convention"],
        flip_text=("averaged with the features of its horizontal mirror image" if run["flip_average"]
                   else "no augmentation"),
        n_train_text=f"{run['n_train']:,}", n_val_text=f"{run['n_val']:,}", n_test_text=f"{run['n_test']:,}",
        n_images=f"{run['n_train'] + run['n_val'] + run['n_test']:,}",
        n_trainval=f"{run['n_train'] + run['n_val']:,}",
        n_classes=str(len(CIFAR_CLASSES)), full=full, subset_text=subset_text,
        weight_decays=", ".join(f"{w:g}" for w in cfg["weight_decays"]))


def _result_values(run: dict, prov: dict) -> dict:
    """The results section: accuracy, scikit-learn reference, per-class accuracy and confusions."""
    sk = run["sklearn"]
    per_class = pd.Series(run["per_class_accuracy"])
    off = np.array(run["confusion_matrix"])
    np.fill_diagonal(off, 0)
    conf_true, conf_pred = np.unravel_index(off.argmax(), off.shape)
    return dict(
        test_acc=pct(run["test_accuracy"]), ci_lo=pct(run["test_ci95"][0]), ci_hi=pct(run["test_ci95"][1]),
        val_acc=pct(run["val_accuracy"]), weight_decay=f"{run['weight_decay']:g}",
        best_iteration=run["best_iteration"],
        sk_acc=pct(sk["test_accuracy"]), sk_agree=pct(sk["agreement_with_probe"]),
        extract_precision=run["timings"]["extract_precision"],
        best_class=per_class.idxmax(), worst_class=per_class.idxmin(),
        best_class_acc=pct(per_class.max()), worst_class_acc=pct(per_class.min()),
        top_confusion=f"{CIFAR_CLASSES[conf_true]} → {CIFAR_CLASSES[conf_pred]}",
        top_confusion_count=int(off.max()), seed=prov["seed"])


def _penalty_values(run: dict) -> dict:
    """How much the penalty matters: the penalties within two standard errors of the best validation
    accuracy, and the one-standard-error rule's choice (the strongest penalty within one)."""
    selection = artifacts.load_csv(f"{PROBE}_selection.csv")
    best = selection["val_accuracy"].max()
    se = binomial_se(best, run["n_val"])
    flat = selection[selection["val_accuracy"] >= best - 2 * se]
    one_se = selection[selection["val_accuracy"] >= best - se]["weight_decay"].max()
    # penalties weaker than the chosen one whose validation loss was lowest at the first check:
    # early stopping, not the penalty, ended their fit (the check interval and patience are ProbeConfig's)
    every, patience = ProbeConfig().eval_every, ProbeConfig().patience
    first = selection[(selection["best_iteration"] <= every) & (selection["weight_decay"] < run["weight_decay"])]
    return dict(selection=selection, val_se_value=se, val_se=f"{100 * se:.1f}",
                check_every=str(every), patience=str(patience),
                early_lambdas=and_join([f"{w:g}" for w in first["weight_decay"]]) or "none",
                early_stop_iterations=and_join(sorted({str(int(i)) for i in first["iterations_run"]})) or "–",
                flat_lo=f"{flat['weight_decay'].min():g}", flat_hi=f"{flat['weight_decay'].max():g}",
                flat_spread=f"{100 * (best - flat['val_accuracy'].min()):.1f}", one_se_choice=f"{one_se:g}")


def _standin_values() -> dict:
    """How the stand-in differs from the ResNet18 the question names: ImageNet accuracy, feature size."""
    from torchvision.models import ResNet18_Weights

    from lib.cifar.backbones import BACKBONES

    resnet_top1 = ResNet18_Weights.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100
    return dict(resnet_top1=pct(resnet_top1), lite_top1=pct(LITE0_IMAGENET_TOP1),
                resnet_dim=str(BACKBONES["resnet18"].feature_dim),
                lite_dim=str(BACKBONES["efficientnet_lite0"].feature_dim))


def _resolution_values(run: dict, timing: dict) -> dict:
    """The resolution section: the sweep recorded on a lent GPU and the CPU timing."""
    sweep = pd.DataFrame(run["sweep"]).sort_values("resolution")
    cpu = pd.DataFrame(timing["rows"]).set_index("resolution")
    low, high = (int(r) for r in sweep["resolution"].iloc[[0, -1]])
    hardware = timing["provenance"]["hardware"]

    def cpu_minutes(r: int) -> str:
        return minutes(cpu.loc[r, "extrapolated_60k_s"]) if r in cpu.index else "not timed"

    return dict(
        sweep=sweep, cpu=cpu, cpu_sample=timing["sample"],
        cpu_name=f"{hardware['cpu']} ({hardware['cpu_count']} cores)",
        cpu_rates=", ".join(f"{r} px: {cpu.loc[r, 'images_per_s']:.1f} img/s" for r in cpu.index),
        sweep_low_acc=pct(sweep["test_accuracy"].iloc[0]), sweep_high_acc=pct(sweep["test_accuracy"].iloc[-1]),
        sweep_low_res=low, sweep_high_res=high, cpu_low_min=cpu_minutes(low), cpu_high_min=cpu_minutes(high))


def engine_text(engine: dict) -> str:
    """The inference engine of a CPU timing, in words ("ONNX Runtime 1.32.0, 2 threads")."""
    if engine.get("engine") == "onnxruntime":
        return f"ONNX Runtime {engine['onnxruntime']}, {engine['intra_op_threads']} threads"
    return f"torch {engine.get('torch', '')} ({engine.get('network', 'eager')} network)".replace("  ", " ")


def _cpu_engine_values(timing: dict) -> dict:
    """The engine behind the CPU timing and, at the highest resolution, what it gains over torch."""
    top = max(timing["rows"], key=lambda row: row["resolution"])
    speedups = and_join([f"{row['speedup_over_torch_eager']:.1f}× at {row['resolution']} px"
                         for row in timing["rows"] if "speedup_over_torch_eager" in row])
    return dict(
        cpu_engine=engine_text(timing["engine"]), cpu_speedups=speedups or "not measured",
        cpu_top_res=top["resolution"],
        cpu_torch_rate=f"{top.get('torch_eager_images_per_s', float('nan')):.1f}",
        cpu_top_difference=f"{top.get('relative_difference_to_torch', float('nan')):.1e}",
        cpu_torch_input_share=pct(top.get("torch_input_share", float("nan"))),
        cpu_graph_input_share=pct(top.get("onnxruntime_profile", {}).get("input_share", float("nan"))))


def _full_cpu_values(cpu_run: dict, run: dict) -> dict:
    """The one full extraction of all 60,000 images on the CPU, and its probe against the GPU run's (``run``)."""
    tm = cpu_run["timings"]
    load = tm["extract_load_average"]
    ours = artifacts.load_array(f"{cpu_run['name']}_test_probs.npy").argmax(1)
    gpu = artifacts.load_array(f"{GPU_SWEEP}_test_probs.npy").argmax(1)
    return dict(
        full_images=f"{cpu_run['n_train'] + cpu_run['n_val'] + cpu_run['n_test']:,}",
        full_resolution=cpu_run["resolution"],
        full_minutes=f"{tm['extract_wall_s'] / 60:.1f} min", full_rate=f"{tm['extract_images_per_s']:.0f}",
        full_load=f"{load['before'][0]:.1f} and {load['after'][0]:.1f}",
        full_acc=pct(cpu_run["test_accuracy"], 2), gpu_acc=pct(run["test_accuracy"], 2),
        full_agree=pct(float(np.mean(ours == gpu)), 2),
        full_command=cpu_run["provenance"]["command"].split(" --mirror")[0])


def data() -> SimpleNamespace:
    """The runs behind the chapter, read from the frozen artifacts, for its figures, tables and ``values``."""
    run = artifacts.load_json(PROBE)
    gpu_run = artifacts.load_json(GPU_SWEEP)
    timing = artifacts.load_json("features_cpu_timing")
    prov = run["provenance"]
    cfg = prov["config"]
    return SimpleNamespace(run=run, cfg=cfg, cm=np.array(run["confusion_matrix"]), **_setup_values(run, cfg),
                           **_result_values(run, prov), **_resolution_values(gpu_run, timing),
                           **_penalty_values(run), **_cpu_engine_values(timing), **_full_cpu_values(run, gpu_run),
                           **_standin_values(), gpu_machine=gpu_run["provenance"]["hardware"]["gpu"])


# Every value the chapter's prose (and the performance appendix) quotes, as the text it prints.
FeatureValues = text_values("FeatureValues", (
    # the answer and the setup
    "test_acc ci_lo ci_hi resolution input_convention feature_dim feature_layer extract_precision flip_text "
    "n_train_text n_val_text n_test_text n_images n_trainval n_classes seed "
    # the stand-in against ResNet18
    "resnet_top1 lite_top1 resnet_dim lite_dim "
    # the penalty and the fit
    "weight_decays weight_decay best_iteration val_acc sk_acc sk_agree flat_lo flat_hi flat_spread val_se "
    "one_se_choice check_every patience early_lambdas early_stop_iterations "
    # per class
    "worst_class worst_class_acc best_class best_class_acc top_confusion top_confusion_count "
    # the resolution sweep, recorded on a lent GPU
    "gpu_machine sweep_low_acc sweep_low_res sweep_high_acc sweep_high_res cpu_low_min cpu_high_min "
    # the CPU timing and its engine (quoted in the performance appendix)
    "cpu_name cpu_sample cpu_engine cpu_rates cpu_speedups cpu_torch_rate cpu_top_res cpu_top_difference "
    "cpu_torch_input_share cpu_graph_input_share "
    # the full extraction on the CPU
    "full_images full_resolution full_command full_minutes full_rate full_load full_acc gpu_acc full_agree"
))


def values(d: SimpleNamespace) -> FeatureValues:
    """The prose's values, from ``data()``, each as the text it prints."""
    return FeatureValues(**{f.name: str(getattr(d, f.name)) for f in fields(FeatureValues)})


def development_callout(v: SimpleNamespace) -> str:
    """A warning box when the artifacts come from a development subset."""
    return (f"::: {{.callout-warning}}\n**Development numbers.** The artifacts behind this chapter "
            f"come from a run on {v.subset_text}, so accuracies are below what the full data give and "
            "confidence intervals are wide. The full run (command at the end of this chapter) "
            "replaces them.\n:::")


def training_figure(v: SimpleNamespace) -> plt.Figure:
    """Loss curves of the chosen penalty, and validation accuracy per penalty."""
    curve = artifacts.load_csv(f"{PROBE}_curve.csv")
    selection = v.selection
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7, 3))
    ax1.plot(curve["iteration"], curve["train_loss"], label="train loss")
    ax1.plot(curve["iteration"], curve["val_loss"], label="validation loss")
    ax1.axvline(v.run["best_iteration"], color="0.4", linestyle="--", linewidth=1)
    ax1.set(xlabel="L-BFGS iteration", ylabel="cross-entropy")
    ax1.legend()
    ax2.set_xscale("log")
    ax2.errorbar(selection["weight_decay"], 100 * selection["val_accuracy"], yerr=100 * v.val_se_value,
                 marker="o", capsize=2)
    ax2.axvline(v.run["weight_decay"], color="0.4", linestyle="--", linewidth=1)
    ax2.set(xlabel="weight decay λ", ylabel="validation accuracy (%)")
    fig.tight_layout()
    return fig


def confusion_figure(v: SimpleNamespace) -> plt.Figure:
    """Counts of true class (rows) predicted as each class (columns)."""
    recall = np.diag(v.cm) / v.cm.sum(axis=1)
    rows = [f"{c} ({pct(r)})" for c, r in zip(CIFAR_CLASSES, recall)]
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    sns.heatmap(pd.DataFrame(v.cm, index=rows, columns=CIFAR_CLASSES), annot=True, fmt="d",
                cmap="Blues", cbar=False, square=True, annot_kws={"fontsize": 7}, ax=ax)
    ax.set(xlabel="predicted class", ylabel="true class (test accuracy)")
    fig.tight_layout()
    return fig


def gallery_figure() -> plt.Figure:
    return gallery.figure(PROBE)


def gallery_values() -> gallery.GalleryValues:
    return gallery.values(PROBE)


def gallery_browser() -> Html:
    """The interactive gallery (HTML only), opening on the linear probe."""
    return browser(PROBE)


def resolution_table(v: SimpleNamespace) -> Markdown:
    """Accuracy and extraction speed per input resolution: the sweep recorded on a lent GPU, and the
    2-core CPU's sample."""
    sweep, cpu = v.sweep, v.cpu
    return md_table(pd.DataFrame({
        "resolution (px)": sweep["resolution"].astype(int),
        "test accuracy": [pct(a) for a in sweep["test_accuracy"]],
        "95% interval": [f"{pct(lo)} – {pct(hi)}" for lo, hi in sweep["test_ci95"]],
        "GPU img/s": [f"{r:,.0f}" for r in sweep["extract_images_per_s"]],
        "CPU img/s, sample": [f"{cpu.loc[r, 'images_per_s']:,.0f}" if r in cpu.index else "–"
                              for r in sweep["resolution"]],
    }), disable_numparse=True)
