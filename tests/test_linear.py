import numpy as np
import pytest
import torch
from torch import nn

from lib.core.errors import ConfigError
from lib.core.devices import resolve_device
from lib.cifar.linear import LinearProbe, ProbeConfig, fit_logistic, fit_one, predict_proba, sklearn_reference


def _blobs(n, d=16, classes=4, sep=1.5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * sep
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(size=(n, d)) + 5.0  # offset: standardisation must matter
    return x.astype(np.float32), y


def test_probe_is_an_nn_linear_module():
    probe = LinearProbe(12, 10)
    assert isinstance(probe, nn.Module) and isinstance(probe.linear, nn.Linear)
    assert [type(m) for m in probe.children()] == [nn.Linear]
    assert probe(torch.zeros(3, 12)).shape == (3, 10)


def test_fit_matches_sklearn_objective():
    # Same penalised objective, solved to convergence by both: same predicted probabilities.
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(300, d=8, classes=4)
    wd = 1e-2
    scaler = StandardScaler().fit(x)
    z = torch.tensor(scaler.transform(x), dtype=torch.float32)
    model, curve, _ = fit_one(z, torch.tensor(y), None, None, wd, ProbeConfig(max_iter=300), n_classes=4)
    ours = torch.softmax(model.linear(z), 1).detach().numpy()
    clf = LogisticRegression(C=1 / (len(y) * wd), max_iter=2000, tol=1e-8).fit(scaler.transform(x), y)
    np.testing.assert_allclose(ours, clf.predict_proba(scaler.transform(x)), atol=2e-3)
    assert curve[-1]["objective"] <= curve[0]["objective"]


def test_fit_logistic_selects_on_validation_and_predicts():
    x, y = _blobs(1500, classes=4, sep=0.6, seed=2)
    xv, yv = _blobs(500, classes=4, sep=0.6, seed=2)  # same centres (same seed), new noise
    xt, yt = _blobs(500, classes=4, sep=0.6, seed=2)
    res = fit_logistic(x, y, xv[::-1].copy(), yv[::-1].copy(),
                       ProbeConfig(weight_decays=(1e-4, 1e-2, 10.0), eval_every=5, patience=3), n_classes=4, device="cpu")
    assert [r["weight_decay"] for r in res.selection] == [1e-4, 1e-2, 10.0]
    best = max(res.selection, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert res.weight_decay == best["weight_decay"]
    assert res.weight_decay != 10.0  # an absurd penalty must lose on validation
    assert res.val_accuracy > 0.6
    probs = predict_proba(res.model, xt)
    assert probs.shape == (500, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == yt).mean() > 0.6
    # early stopping keeps the state with the lowest validation loss
    chosen = [r for r in res.selection if r["weight_decay"] == res.weight_decay][0]
    assert chosen["best_iteration"] <= chosen["iterations_run"]
    assert min(row["val_loss"] for row in res.curve) == pytest.approx(res.val_loss, rel=1e-5)


def test_sklearn_reference_reports_accuracy_and_time():
    x, y = _blobs(400, classes=3)
    ref = sklearn_reference(x[:300], y[:300], x[300:], y[300:], weight_decay=1e-2)
    assert ref["C"] == pytest.approx(1 / (300 * 1e-2))
    assert 0.5 < ref["test_accuracy"] <= 1.0 and ref["train_seconds"] >= 0
    assert ref["predictions"].shape == (100,)


def test_bad_options():
    with pytest.raises(ConfigError):
        ProbeConfig(weight_decays=())
    with pytest.raises(ConfigError):
        ProbeConfig(weight_decays=(-1.0,))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError):
            resolve_device("cuda")
