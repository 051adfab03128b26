"""Chapter 2 (finetuning): its values, sentences, figures and tables. The answer is the partial
finetune on the 2-core CPU (``results/finetune_cpu_partial*``), compared with chapter 1's CPU probe
(``results/features_cpu_onnx*``); the full finetune recorded on a lent GPU (``results/finetune.json``)
is a labelled extra."""
from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, minutes, pct, text_values
from lib.book import gallery
from lib.book.gallery_browser import browser
from lib.book.widgets import Html
from lib.cifar.metrics import accuracy_ci, per_class_accuracy
from lib.core.stats import format_p, mcnemar
from lib.core import artifacts
from lib.core.data import CIFAR_CLASSES

RUN = "finetune_cpu_partial_short"   # the answer: re-derivable on a 2-core CPU
PROBE = "features_cpu_onnx"    # chapter 1's answer, compared with it
GPU_RUN = "finetune"           # extra: every layer finetuned, recorded on a lent GPU


def machine_of(hw: dict) -> str:
    """The device a number was measured on, in words."""
    name = hw.get("device_name") or "unknown device"
    if hw.get("device") == "cpu":
        threads = hw.get("torch_threads")
        return f"CPU ({name}, {threads} torch thread{'s' if threads != 1 else ''})"
    return f"GPU ({name})"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _run_values(run: dict) -> dict:
    """The run: data, hardware, accuracy, timing."""
    hw, sub, tm = run["hardware"], run["subsets"], run["timings"]
    act = run["partial"]["activations"]
    return dict(
        machine=machine_of(hw), precision="bf16 autocast" if hw["amp"] == "bfloat16" else "fp32",
        layout="channels_last" if hw["channels_last"] else "contiguous (NCHW)", full=sub["full"],
        cpu_name=hw.get("device_name") or "unknown CPU", threads=hw["torch_threads"],
        n_train_text=f"{sub['n_train']:,}", n_val_text=f"{sub['n_val']:,}", n_test_text=f"{sub['n_test']:,}",
        backbone=run["backbone"], resolution=run["resolution"], epochs=run["epochs"],
        best_epoch=run["best_epoch"], stages=run["recipe"]["trainable_stages"],
        test_acc=pct(run["test_accuracy"]), ci_lo=pct(run["test_ci_low"]), ci_hi=pct(run["test_ci_high"]),
        val_acc=pct(run["val_accuracy"]) if run["val_accuracy"] is not None else "n/a",
        train_time=minutes(tm["train_s"]), trainable_text=f"{run['trainable_params']:,}",
        images_trained=f"{tm['images_trained']:,}", train_s=f"{tm['train_s']:.0f} s",
        avg_rate=f"{tm['images_trained'] / tm['train_s']:,.0f}",
        total_time=minutes(run.get("total_wall_time_s") or tm["this_session_wall_s"]),
        history=pd.DataFrame(run["history"]), act_shape=" × ".join(str(s) for s in act["shape"]),
        act_gb=f"{act['megabytes'] / 1024:.1f}", act_time=minutes(act["extraction_s"]),
        ft_compute=minutes(act["extraction_s"] + tm["train_plus_val_s"] + tm["test_eval_s"]))


def _recipe_values(rc: dict) -> dict:
    """The recipe as the setup section states it."""
    schedule = (f"linear warm-up over the first {rc['warmup_epochs']:g} epoch, then cosine decay to zero"
                if rc["schedule"] == "cosine" else
                f"one-cycle (warm-up over {rc['warmup_epochs']:g} epoch, cosine annealing)")
    return dict(
        opt_text=("SGD with Nesterov momentum " + f"{rc['momentum']:g}" if rc["optimizer"] == "sgd"
                  else f"AdamW (β₁ = {rc['momentum']:g})"),
        schedule_sentence=schedule[0].upper() + schedule[1:], head_lr=f"{rc['scaled_lr']:.3g}",
        backbone_scale=f"{1 / rc['backbone_lr_scale']:g}" if rc["backbone_lr_scale"] else "∞",
        backbone_lr=f"{rc['scaled_lr'] * rc['backbone_lr_scale']:.3g}", lr_ref=f"{rc['lr']:g}",
        batch=rc["batch_size"], wd=f"{rc['weight_decay']:g}", smoothing=f"{rc['label_smoothing']:g}",
        padding=rc["crop_padding"], bn_momentum=f"{rc['bn_momentum']:g}", dropout=f"{rc['head_dropout']:g}")


def _comparison_values(labels: np.ndarray, ft_pred: np.ndarray, feat: dict, feat_probs: np.ndarray) -> dict:
    """Chapter 1's probe against the finetuned network on the same test images (McNemar), and which
    classes gained most and least."""
    n_common = min(len(labels), len(feat_probs))
    y = labels[:n_common]
    f_pred, t_pred = feat_probs[:n_common].argmax(1), ft_pred[:n_common]
    f_correct, t_correct = f_pred == y, t_pred == y
    f_acc, f_lo, f_hi = accuracy_ci(f_correct)
    t_acc, t_lo, t_hi = accuracy_ci(t_correct)
    test = mcnemar(f_correct, t_correct)
    timings = feat["timings"]
    per_f, per_t = per_class_accuracy(y, f_pred), per_class_accuracy(y, t_pred)
    gain = pd.Series(per_t - per_f, index=CIFAR_CLASSES).sort_values(ascending=False)
    return dict(
        have_features=True,  # chapter 2 asks; chapter 1's artifacts are required (the preface reads them too)
        n_common=n_common, f_acc=f_acc, f_lo=f_lo, f_hi=f_hi, t_acc=t_acc, t_lo=t_lo,
        t_hi=t_hi, p_exact=format_p(test.p_exact), p_midp=format_p(test.p_midp), gained=f"{test.b_only:,}",
        lost=f"{test.a_only:,}", n_common_text=f"{n_common:,}",
        f_compute=timings["extract_train_s"] + timings["extract_test_s"] + timings["probe_selection_s"],
        per_f=per_f, per_t=per_t, gain=gain, gain_points=f"{100 * (t_acc - f_acc):.1f}",
        same_subset=n_common == len(labels) == len(feat_probs), significant=test.p_exact < 0.05,
        significance="significant" if test.p_exact < 0.05 else "not significant",
        best_gain_class=gain.index[0], best_gain=f"{100 * gain.iloc[0]:+.1f}",
        second_gain_class=gain.index[1], second_gain=f"{100 * gain.iloc[1]:+.1f}")


def data() -> SimpleNamespace:
    """The run, the recipe and the comparison with chapter 1, read from the frozen artifacts."""
    run = artifacts.load_json(RUN)
    labels = artifacts.load_array(f"{RUN}_test_labels.npy").astype(np.int64)
    ft_pred = artifacts.load_array(f"{RUN}_test_probs.npy").argmax(1)
    feat = artifacts.load_json(PROBE)
    return SimpleNamespace(
        run=run, rc=run["recipe"], labels=labels, ft_pred=ft_pred, feat=feat, **_run_values(run),
        **_recipe_values(run["recipe"]),
        **_comparison_values(labels, ft_pred, feat, artifacts.load_array(f"{PROBE}_test_probs.npy")))


# Every value the chapter's prose quotes, formatted as printed (prose does no arithmetic).
FinetuneValues = text_values("FinetuneValues", (
    # the answer; gain_points (finetune minus chapter 1's probe) is the one gain the book quotes
    "stages test_acc ci_lo ci_hi f_acc gain_points gained lost p_exact significance best_gain_class best_gain "
    "second_gain_class second_gain cpu_name "
    # what is trained, and the activations kept
    "trainable_text resolution act_shape act_gb act_time "
    # the recipe
    "padding opt_text batch head_lr backbone_lr backbone_scale lr_ref wd schedule_sentence smoothing dropout "
    "bn_momentum precision layout threads "
    # the run
    "epochs n_train_text n_val_text best_epoch val_acc n_test_text machine train_time images_trained train_s "
    "avg_rate total_time"
))


def values(d: SimpleNamespace) -> FinetuneValues:
    """The prose's values, from ``data()``."""
    text = {f.name: str(getattr(d, f.name)) for f in fields(FinetuneValues)}
    return FinetuneValues(**text | {"f_acc": pct(d.f_acc)})  # d.f_acc is the number the tables format


def development_callout(v: SimpleNamespace) -> str:
    """A warning box when the artifacts come from a development subset."""
    return (f"::: {{.callout-warning}}\n**Development numbers.** The artifacts behind this chapter come from "
            f"a run on a subset only ({v.n_train_text} training, {v.n_val_text} validation and {v.n_test_text} "
            f"test images, {plural(v.epochs, 'epoch')} at {v.resolution} px on {v.machine}), so accuracies are "
            "far below what the full recipe gives and intervals are wide. The full run (command in "
            "@sec-repro-commands) replaces them.\n:::")


def other_runs_text(v: SimpleNamespace) -> str:
    """The full finetunes: every layer on the 2-core CPU at low resolution, and the extra on a lent GPU."""
    cpu_run, gpu = artifacts.load_json("finetune_cpu"), artifacts.load_json(GPU_RUN)
    ct, rc = cpu_run["timings"], gpu["recipe"]
    return (
        f"Finetuning every layer on the same CPU (`results/finetune_cpu.json`) is only affordable at "
        f"{cpu_run['resolution']} px: {plural(cpu_run['epochs'], 'epoch')} at "
        f"{ct['train_images_per_s']:,.0f} images/s took {minutes(ct['train_plus_val_s'] + ct['test_eval_s'])} "
        f"of compute and reach {pct(cpu_run['test_accuracy'])}. "
        f"**Extra, recorded on a lent GPU** (not re-derivable on a CPU, so never this chapter's answer): "
        f"every layer finetuned at {gpu['resolution']} px for {gpu['epochs']} epochs on a lent "
        f"{gpu['hardware']['device_name']} ({gpu['trainable_params']:,} trainable parameters, "
        f"{rc['schedule']} schedule, batch {rc['batch_size']}, "
        f"{'bf16 autocast' if gpu['hardware']['amp'] == 'bfloat16' else 'fp32'}) reaches "
        f"{pct(gpu['test_accuracy'])} (95% interval {pct(gpu['test_ci_low'])} to {pct(gpu['test_ci_high'])}) "
        f"after {minutes(gpu['timings']['train_s'])} of training, against {v.test_acc} for the partial "
        "finetune on the CPU.")


def curves_figure(v: SimpleNamespace) -> plt.Figure:
    """Loss, accuracy per epoch, and validation accuracy against training time."""
    history = v.history
    fig, axes = plt.subplots(1, 3, figsize=(7, 2.6))
    e = history["epoch"]
    axes[0].plot(e, history["train_loss"], marker="o", label="train")
    if "val_loss" in history:
        axes[0].plot(e, history["val_loss"], marker="o", label="validation")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy")
    axes[0].legend(fontsize=7)
    axes[1].plot(e, 100 * history["train_accuracy"], marker="o", label="train")
    if "val_accuracy" in history:
        axes[1].plot(e, 100 * history["val_accuracy"], marker="o", label="validation")
        axes[2].plot(history["seconds"].cumsum() / 60, 100 * history["val_accuracy"], marker="o")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)")
    axes[2].set(xlabel="training time (min)", ylabel="val accuracy (%)")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def gallery_figure() -> plt.Figure:
    return gallery.figure(RUN)


def gallery_browser() -> Html:
    """The interactive gallery (HTML only), opening on the finetuned network."""
    return browser(RUN)


def comparison_text(v: SimpleNamespace) -> str:
    """Both classifiers on the same images, and McNemar's paired test."""
    scope = ("the same 10,000 test images" if v.same_subset and v.n_common == 10000 else
             f"the first {v.n_common_text} official test images, which both runs predicted")
    return (f"Both classifiers predict {scope}, so their accuracies ({pct(v.f_acc)} for the probe, "
            f"{pct(v.t_acc)} for the finetuned network) are compared with McNemar's test for paired "
            "proportions [@mcnemar1947]: it uses only the images on which the two disagree and asks whether "
            "they split more unevenly than a fair coin would split them. Finetuning turned "
            f"{v.gained} wrong answers right and {v.lost} right answers wrong. The exact two-sided p-value is "
            f"{v.p_exact}, and the mid-p value (the exact p-value less half the probability of the observed "
            f"split, less conservative [@fagerland2013mcnemar]) is {v.p_midp}: the difference "
            f"{'is' if v.significant else 'is not'} significant at the 5% level.")


def compare_table(v: SimpleNamespace) -> Markdown:
    """Extracted features + probe against finetuning: accuracy, parameters, compute, hardware."""
    return md_table(pd.DataFrame({
        "": ["test accuracy", "95% interval", "trainable parameters", "compute time (2-core CPU)"],
        "features + linear probe": [pct(v.f_acc), f"{pct(v.f_lo)} – {pct(v.f_hi)}",
                                    f"{v.feat['feature_dim'] * 10 + 10:,}", minutes(v.f_compute)],
        "finetuned network": [pct(v.t_acc), f"{pct(v.t_lo)} – {pct(v.t_hi)}", v.trainable_text, v.ft_compute],
    }))


def per_class_table(v: SimpleNamespace) -> Markdown:
    """Per-class accuracy of both classifiers, sorted by the gain from finetuning."""
    order = [CIFAR_CLASSES.index(c) for c in v.gain.index]
    return md_table(pd.DataFrame({
        "class": v.gain.index, "features + probe": [pct(v.per_f[i]) for i in order],
        "finetuned": [pct(v.per_t[i]) for i in order], "gain": [f"{100 * g:+.1f} points" for g in v.gain.values],
    }))


def per_class_text(v: SimpleNamespace) -> str:
    """Which classes gained most and least from finetuning."""
    gain = v.gain
    return (f"Per class, finetuning changed the accuracy of **{gain.index[0]}** most favourably "
            f"({100 * gain.iloc[0]:+.1f} percentage points), then {gain.index[1]} ({100 * gain.iloc[1]:+.1f}); "
            f"the least favourable change is for {gain.index[-1]} ({100 * gain.iloc[-1]:+.1f}).")


def flips_figure() -> plt.Figure:
    """Test images the probe got wrong and the finetuned network right, with both predictions."""
    flips = artifacts.load_arrays(f"{RUN}_flips.npz")
    n, cols = len(flips["indices"]), 5
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6, 1.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(flips["images"][i], interpolation="nearest")
        before, after = (gallery.short(CIFAR_CLASSES[flips[k][i]]) for k in ("before_pred", "after_pred"))
        ax.set_title(f"{before} {flips['before_prob'][i]:.2f} → {after} {flips['after_prob'][i]:.2f}",
                     fontsize=7.5)
    fig.tight_layout()
    return fig
