"""Multinomial logistic regression as an ``nn.Module`` holding one ``nn.Linear``.

Training minimises the mean cross-entropy plus ``weight_decay / 2 * ||W||^2`` (the
bias is not penalised) on standardised features with full-batch L-BFGS: the problem
is convex and smooth, a few hundred thousand examples times a thousand features fit
in memory, and L-BFGS with a strong-Wolfe line search needs no learning rate.
The penalty strength and the number of iterations (early stopping) are chosen on a
held-out validation split. With ``n`` training examples, ``weight_decay = 1 / (n C)``
is the same objective as scikit-learn's ``LogisticRegression(C=C)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import LBFGS

from lib.core.devices import resolve_device
from lib.core.errors import ConfigError

DEFAULT_WEIGHT_DECAYS = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


@dataclass(frozen=True)
class ProbeConfig:
    """Every setting of a probe fit, in one place and recorded whole in the artifact's provenance
    (``features``, ``probe-variants``); the commands' flags fill it."""

    weight_decays: tuple[float, ...] = DEFAULT_WEIGHT_DECAYS  # L2 penalties tried on the validation split
    max_iter: int = 500          # L-BFGS iteration cap
    eval_every: int = 10         # L-BFGS iterations between validation checks (early stopping)
    patience: int = 5            # validation checks without improvement before stopping
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if len(self.weight_decays) == 0:
            raise ConfigError("need at least one weight decay to try")
        if any(not wd >= 0 for wd in self.weight_decays):
            raise ConfigError(f"weight decays must be non-negative, got {list(self.weight_decays)}")
        if self.max_iter < 1 or self.eval_every < 1 or self.patience < 1:
            raise ConfigError("max_iter, eval_every and patience must be positive")

    @classmethod
    def from_flags(cls, args, label_smoothing: float = 0.0) -> "ProbeConfig":
        """From a command's ``--weight-decays`` and ``--max-iter``."""
        return cls(tuple(args.weight_decays), args.max_iter, label_smoothing=label_smoothing)


class LinearProbe(nn.Module):
    """Logistic regression: standardise the features, then one nn.Linear."""

    def __init__(self, feature_dim: int, n_classes: int = 10):
        super().__init__()
        # training-set mean and standard deviation, set before fitting
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))
        self.linear = nn.Linear(feature_dim, n_classes)  # scores W z + b
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Raw features -> class scores (logits); softmax -> probabilities."""
        return self.linear((x.to(self.mean.dtype) - self.mean) / self.std)


def set_standardisation(probe: LinearProbe, features: torch.Tensor, eps: float = 1e-6) -> None:
    """Store the training features' mean and standard deviation in the probe's buffers."""
    probe.mean.copy_(features.mean(0))
    probe.std.copy_(features.std(0).clamp_min(eps))


def standardise(probe: LinearProbe, x: torch.Tensor) -> torch.Tensor:
    """What the probe's ``nn.Linear`` sees: features standardised with the stored statistics."""
    return (x.to(probe.mean.dtype) - probe.mean) / probe.std


@dataclass
class FitResult:
    model: LinearProbe
    weight_decay: float
    best_iteration: int
    val_accuracy: float
    val_loss: float
    train_seconds: float                       # the chosen weight decay's fit
    selection_seconds: float                   # all weight decays together
    curve: list[dict] = field(default_factory=list)       # chosen fit: per evaluation
    selection: list[dict] = field(default_factory=list)   # one row per weight decay


def penalised_loss(probe: LinearProbe, z: Tensor, y: Tensor,
                   weight_decay: float, smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy plus (weight_decay/2)·||W||²; bias not penalised."""
    logits = probe.linear(z)
    return (F.cross_entropy(logits, y, label_smoothing=smoothing)
            + 0.5 * weight_decay * probe.linear.weight.pow(2).sum())


def training_step(probe: LinearProbe, optimiser: LBFGS, z: Tensor,
                  y: Tensor, weight_decay: float, smoothing: float = 0.0) -> None:
    """One L-BFGS step; the line search calls closure() as often as it needs."""
    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = penalised_loss(probe, z, y, weight_decay, smoothing)
        loss.backward()
        return loss
    optimiser.step(closure)


@torch.no_grad()
def _evaluate(model: LinearProbe, z: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model.linear(z)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def fit_one(z_train: torch.Tensor, y_train: torch.Tensor, z_val: torch.Tensor | None,
            y_val: torch.Tensor | None, weight_decay: float, config: ProbeConfig = ProbeConfig(), *,
            n_classes: int = 10) -> tuple[LinearProbe, list[dict], int]:
    """Fit on already standardised ``z_train``; keep the state with the lowest validation
    loss, stop after ``config.patience`` evaluations without improvement (or on convergence).

    Returns ``(model, curve, best_iteration)``; the model's standardisation buffers are
    left at identity (the caller sets them)."""
    if weight_decay < 0:
        raise ConfigError(f"weight decay must be non-negative, got {weight_decay}")
    model = LinearProbe(z_train.shape[1], n_classes).to(z_train.device)
    max_iter, eval_every, label_smoothing = config.max_iter, config.eval_every, config.label_smoothing
    optimiser = torch.optim.LBFGS(model.linear.parameters(), lr=1.0, max_iter=eval_every,
                                  history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-6, tolerance_change=1e-9)

    curve: list[dict] = []
    best, stale, iteration, previous = (float("inf"), 0, None), 0, 0, None
    while True:  # the first pass records the starting point (zero weights: loss ln C)
        with torch.no_grad():
            objective = float(penalised_loss(model, z_train, y_train, weight_decay, label_smoothing))
        train_loss, train_acc = _evaluate(model, z_train, y_train)
        row = {"iteration": iteration, "objective": objective, "train_loss": train_loss,
               "train_accuracy": train_acc}
        if z_val is not None:
            val_loss, val_acc = _evaluate(model, z_val, y_val)
            row.update(val_loss=val_loss, val_accuracy=val_acc)
            if val_loss < best[0] - 1e-6:
                best = (val_loss, iteration, {k: v.clone() for k, v in model.linear.state_dict().items()})
                stale = 0
            else:
                stale += 1
        curve.append(row)
        if z_val is not None and stale >= config.patience:
            break
        if iteration > 0 and previous is not None and \
                abs(previous - objective) <= 1e-9 * max(1.0, abs(objective)):
            break  # converged: L-BFGS makes no further progress
        previous = objective
        if iteration >= max_iter:
            break
        training_step(model, optimiser, z_train, y_train, weight_decay, label_smoothing)
        iteration = int(optimiser.state[optimiser._params[0]].get("n_iter", iteration + eval_every))
    if best[2] is not None:
        model.linear.load_state_dict(best[2])
        return model, curve, best[1]
    return model, curve, iteration


def fit_logistic(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                 config: ProbeConfig = ProbeConfig(), *, n_classes: int = 10,
                 device: str | None = None) -> FitResult:
    """Choose the weight decay (highest validation accuracy; ties -> lower validation loss)
    and the stopping iteration (lowest validation loss) and return the chosen probe.

    Standardisation statistics come from ``train_x`` only."""
    dev = resolve_device(device)
    xt, xv = (torch.as_tensor(np.asarray(x), dtype=torch.float32, device=dev) for x in (train_x, val_x))
    yt, yv = (torch.as_tensor(np.asarray(y), dtype=torch.int64, device=dev) for y in (train_y, val_y))
    scaler = LinearProbe(xt.shape[1], n_classes).to(dev)
    set_standardisation(scaler, xt)
    zt, zv = standardise(scaler, xt), standardise(scaler, xv)

    selection, fits = [], []
    start_all = time.perf_counter()
    with torch.enable_grad():
        for wd in config.weight_decays:
            start = time.perf_counter()
            model, curve, best_iter = fit_one(zt, yt, zv, yv, float(wd), config, n_classes=n_classes)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            val_loss, val_acc = _evaluate(model, zv, yv)
            C = 1.0 / (len(yt) * wd) if wd > 0 else float("inf")
            selection.append({"weight_decay": float(wd), "C": C,
                              "best_iteration": best_iter, "iterations_run": curve[-1]["iteration"],
                              "val_loss": val_loss, "val_accuracy": val_acc, "seconds": seconds})
            fits.append((model, curve, best_iter, seconds))
    selection_seconds = time.perf_counter() - start_all
    best_i = min(range(len(selection)),
                 key=lambda i: (-selection[i]["val_accuracy"], selection[i]["val_loss"]))
    model, curve, best_iter, seconds = fits[best_i]
    model.mean.copy_(scaler.mean)
    model.std.copy_(scaler.std)
    return FitResult(model=model.cpu().eval(), weight_decay=selection[best_i]["weight_decay"],
                     best_iteration=best_iter, val_accuracy=selection[best_i]["val_accuracy"],
                     val_loss=selection[best_i]["val_loss"], train_seconds=seconds,
                     selection_seconds=selection_seconds, curve=curve, selection=selection)


@torch.no_grad()
def predict_proba(model: LinearProbe, features: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Softmax probabilities (N, n_classes) as float32, in the order of ``features``."""
    model = model.cpu().eval()
    out = []
    for start in range(0, len(features), batch_size):
        x = torch.as_tensor(np.asarray(features[start:start + batch_size]), dtype=torch.float32)
        out.append(torch.softmax(model(x), dim=1).numpy())
    if not out:
        return np.zeros((0, model.linear.out_features), np.float32)
    return np.concatenate(out).astype(np.float32)


def sklearn_reference(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                      weight_decay: float, max_iter: int = 1000) -> dict:
    """scikit-learn ``LogisticRegression(lbfgs)`` on the same standardised features with the
    equivalent penalty ``C = 1 / (n * weight_decay)``: accuracy and training time."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.asarray(train_x, dtype=np.float32))
    zt = scaler.transform(np.asarray(train_x, dtype=np.float32))
    zs = scaler.transform(np.asarray(test_x, dtype=np.float32))
    C = 1.0 / (len(train_y) * weight_decay)
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, tol=1e-4)
    start = time.perf_counter()
    clf.fit(zt, train_y)
    seconds = time.perf_counter() - start
    pred = clf.predict(zs)
    return {"C": C, "solver": "lbfgs", "max_iter": max_iter, "n_iter": int(np.max(clf.n_iter_)),
            "train_seconds": seconds, "test_accuracy": float(np.mean(pred == np.asarray(test_y))),
            "predictions": pred}
