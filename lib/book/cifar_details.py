"""Detail behind chapters 1 and 2 that no question needs, shown in the appendices: the finetuning
pilot (which resolution fits which hardware), and the commands a GPU user runs. Read from
``results/finetune_pilot_*.json``, ``results/finetune_cpu_partial_short.json`` (chapter 2's answer) and
``results/finetune.json`` (the full finetune recorded on a lent GPU, an extra)."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pandas as pd
from IPython.display import Markdown

from lib.book.finetuning import machine_of
from lib.book.format import md_table, minutes, pct
from lib.cifar.finetune.recipe import Recipe
from lib.core import artifacts


def _cpu_sentence(cpu_pilot: dict, cp: pd.DataFrame) -> str:
    """What the CPU pilot measured, as one sentence (extrapolations marked as such)."""
    load = cpu_pilot["hardware"].get("load_average_1min")
    cores = cpu_pilot["provenance"]["hardware"]["cpu_count"]
    load_text = (f"{load}: other jobs shared the {cores} cores, so these rates are pessimistic"
                 if load is not None and load > cores else f"{load} on {cores} cores")
    rates = "; ".join(f"{r} px: {cp.loc[r, 'train_images_per_s']:.1f} img/s" for r in cp.index)
    epochs_2h = "; ".join(f"{r} px: {cp.loc[r, 'projected_epoch_s'] / 60:.0f} min per epoch, "
                          f"{cp.loc[r, 'projected_epochs_in_2h']:.1f} epochs" for r in cp.index)
    return (f"On the {machine_of(cpu_pilot['hardware'])} (1-minute load average {load_text}), training throughput "
            f"over {int(cp['train_images'].iloc[0])} images was: {rates}. Extrapolated (not run) to a full "
            f"epoch of {cpu_pilot['full_train_images']:,} training images plus validation, a 2-hour CPU "
            f"budget allows: {epochs_2h}.")


def pilot_values() -> SimpleNamespace:
    """Both pilots and the reported runs' machines and recipe."""
    cpu_pilot, gpu_pilot = artifacts.load_json("finetune_pilot_cpu"), artifacts.load_json("finetune_pilot_cuda")
    cp, gp = (pd.DataFrame(p["rows"]).set_index("resolution") for p in (cpu_pilot, gpu_pilot))
    gpu_run, answer = artifacts.load_json("finetune"), artifacts.load_json("finetune_cpu_partial_short")
    gpu_rates = "; ".join(f"{r} px: {gp.loc[r, 'train_images_per_s']:,.0f} img/s" for r in gp.index)
    return SimpleNamespace(
        pilots=[cpu_pilot, gpu_pilot], cpu_pilot=cpu_pilot, cp=cp, gp=gp, rc=gpu_run["recipe"],
        cpu_pilot_images=int(cp["train_images"].iloc[0]), cpu_sentence=_cpu_sentence(cpu_pilot, cp),
        gpu_sentence=f"On the {machine_of(gpu_pilot['hardware'])} the pilot measured {gpu_rates}.",
        machine=machine_of(answer["hardware"]), resolution=answer["resolution"],
        gpu_run_machine=machine_of(gpu_run["hardware"]), gpu_resolution=gpu_run["resolution"])


def gpu_pilot_caveat(v: SimpleNamespace) -> str:
    """Why the GPU pilot's accuracy after a few steps cannot rank the resolutions."""
    gp = v.gp
    if len(gp) < 2:
        return ""
    lo_r, hi_r = gp.index.min(), gp.index.max()
    n_val = int(gp.loc[hi_r, "val_images"])
    se = 100 * (gp.loc[hi_r, "val_accuracy"] * (1 - gp.loc[hi_r, "val_accuracy"]) / n_val) ** 0.5
    return (f"On the GPU the pilot's validation accuracy is lower at {hi_r} px "
            f"({pct(gp.loc[hi_r, 'val_accuracy'])}) than at {lo_r} px ({pct(gp.loc[lo_r, 'val_accuracy'])}) "
            f"after {int(gp.loc[hi_r, 'steps'])} steps. The gap is larger than the validation sampling error "
            f"(about {se:.1f} points on {n_val:,} images), but it measures how fast a freshly initialised head "
            "starts under a schedule compressed onto 10 steps, not where training ends: 10 steps cannot rank the "
            "resolutions. The ranking at convergence comes from chapter 1's fully trained probes, whose accuracy "
            "rises with resolution (@tbl-features-resolution), and the pilot was used for its throughput, which "
            "decided that 224 px fits the GPU budget.")


def pilot_table(v: SimpleNamespace) -> Markdown:
    """Pilot throughput and early accuracy per resolution and hardware."""
    return md_table(pd.DataFrame([
        {"device": "GPU" if doc["hardware"]["device"] != "cpu" else "CPU", "resolution (px)": r["resolution"],
         "train images": r["train_images"], "train img/s": round(r["train_images_per_s"], 1),
         "val accuracy": pct(r["val_accuracy"]), "val images": r["val_images"],
         "epoch (extrap.)": minutes(r["projected_epoch_s"]),
         "epochs in 2 h (extrap.)": round(r["projected_epochs_in_2h"], 1)}
        for doc in v.pilots for r in doc["rows"]]), floatfmt=".1f")


def pilot_tradeoff_text(v: SimpleNamespace) -> str:
    """The resolution trade-off the pilots show, then which run is reported."""
    parts = []
    cp, gp = v.cp, v.gp
    if len(cp) > 1:
        lo_r, hi_r = cp.index.min(), cp.index.max()
        slowdown = cp.loc[lo_r, "train_images_per_s"] / cp.loc[hi_r, "train_images_per_s"]
        parts.append(
            f"The trade-off on the CPU: going from {lo_r} px to {hi_r} px makes training "
            f"{slowdown:.1f} times slower per image, so at {hi_r} px a 2-hour budget "
            f"covers about {cp.loc[hi_r, 'projected_epochs_in_2h']:.1f} epochs against "
            f"{cp.loc[lo_r, 'projected_epochs_in_2h']:.1f} at {lo_r} px (extrapolated), while the validation "
            f"accuracy after the same {v.cpu_pilot_images} training images was "
            f"{pct(cp.loc[lo_r, 'val_accuracy'])} at {lo_r} px and {pct(cp.loc[hi_r, 'val_accuracy'])} at "
            f"{hi_r} px. Pilot accuracies after a fraction of an epoch are noisy (few validation images, a "
            f"compressed schedule) and show direction, not final accuracy.")
    if len(gp) > 1:
        lo_r, hi_r = gp.index.min(), gp.index.max()
        parts.append(
            f"On the GPU a step from {lo_r} px to {hi_r} px costs a factor "
            f"{gp.loc[lo_r, 'train_images_per_s'] / gp.loc[hi_r, 'train_images_per_s']:.1f} in throughput, "
            f"and one epoch at {hi_r} px takes about {minutes(gp.loc[hi_r, 'projected_epoch_s'])} "
            "(extrapolated), so the highest resolution fits the budget there.")
    parts.append(f"\nChapter 2's answer, the partial finetune, was made at {v.resolution} px on the "
                 f"{v.machine}; the full finetune at {v.gpu_resolution} px, an extra, was recorded on a lent "
                 f"{v.gpu_run_machine}.")
    return "\n".join(parts)


def _recipe_flags(rc: dict) -> str:
    """The command-line flags that reproduce ``rc`` (only those that differ from the defaults)."""
    flags = []
    for f in dataclasses.fields(Recipe):
        value = rc.get(f.name, f.default)  # fields added after a run took their default then
        name = f.name.replace("_", "-")
        if value == f.default:
            continue
        if isinstance(f.default, bool):
            flags.append("--random-init" if f.name == "pretrained" else f"--{name}" if value else f"--no-{name}")
        else:
            flags.append(f"--{name} {value}")
    return " ".join(flags)


def _cpu_command(v: SimpleNamespace) -> str:
    """The CPU-only command the CPU pilot's throughput suggests (empty if no resolution fits 2 epochs)."""
    fits = v.cp[v.cp["projected_epochs_in_2h"] >= 2]
    if not len(fits):
        return ""
    r_cpu = int(fits.index.max())
    e_cpu = int(fits.loc[r_cpu, "projected_epochs_in_2h"])
    return (f"# CPU only: about {e_cpu} epochs at {r_cpu} px fit 2 hours (extrapolated from the CPU pilot)\n"
            f"python -m lib finetune --resolution {r_cpu} --epochs {e_cpu} --batch-size "
            f"{v.cpu_pilot['batch_size']} --max-minutes 120\n")
def reproduce_block(v: SimpleNamespace) -> str:
    """The commands that regenerate chapter 2's artifacts, as a bash block."""
    return ("```bash\n"
            "# pilot: throughput and early accuracy per resolution\n"
            "python -m lib finetune --pilot --pilot-resolutions 128,160,224 \\\n"
            "    --pilot-train 5120 --pilot-val 2000\n"
            "# chapter 2's extra: the full finetune recorded on a lent GPU; rerunning it resumes after a kill\n"
            f"python -m lib finetune {_recipe_flags(v.rc)}\n"
            "# a GPU user: the recipe's defaults (224 px); stops cleanly after an epoch\n"
            "python -m lib finetune --max-minutes 5\n"
            "# chapter 2's gallery and flipped examples (against chapter 1's CPU probe)\n"
            "python -m lib finetune --gallery-only --name finetune_cpu_partial_short "
            "--flips-against features_cpu_onnx\n"
            + _cpu_command(v) + "```")
