"""pnref.nn: layers, how each norm is wired, batch-norm state, the optimizer, data and training."""

from __future__ import annotations

import io
import json
import math

import autograd
import numpy as np
import pytest

from pnref._progress import ProgressBar
from pnref.nn import (
    CNN,
    MLP,
    SGD,
    TrainConfig,
    cosine_lr,
    iterate_minibatches,
    layers,
    softmax_cross_entropy,
    synthetic_images,
    train,
)
from pnref.nn.norm_layer import NORMS, apply_norm, init_norm, parse_norm

# ---------------------------------------------------------------------------------- layers


def test_pooling_and_flatten_against_loops():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 6))
    avg = layers.avg_pool2d(x, 2)
    mx = layers.max_pool2d(x, 2)
    for i in range(2):
        for j in range(3):
            window = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            # float64 mean of 4 numbers: rounding only
            np.testing.assert_allclose(avg[:, :, i, j], window.mean(axis=(2, 3)), rtol=1e-14)
            np.testing.assert_array_equal(mx[:, :, i, j], window.max(axis=(2, 3)))
    np.testing.assert_allclose(layers.global_avg_pool(x), x.mean(axis=(2, 3)), rtol=1e-14)
    assert layers.flatten(x).shape == (2, 72)
    with pytest.raises(ValueError, match="divide"):
        layers.avg_pool2d(x[:, :, :3], 2)


def test_dense_and_max_pool_gradients():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4))
    w = rng.normal(size=(4, 2))
    cot = rng.normal(size=(3, 2))
    gw = autograd.grad(lambda w: np.sum(layers.dense(x, w, np.ones(2)) * cot))(w)
    # float64 matrix product: rounding only
    np.testing.assert_allclose(gw, x.T @ cot, rtol=1e-13)
    # Max pool: each window's cotangent goes to its maximum, the other three get 0. Random
    # cotangent over several windows (an all-ones one would hide a missing multiplication).
    img = rng.normal(size=(2, 3, 4, 6))
    pool_cot = rng.normal(size=(2, 3, 2, 3))
    g = autograd.grad(lambda z: np.sum(layers.max_pool2d(z, 2) * pool_cot))(img)
    windows = img.reshape(2, 3, 2, 2, 3, 2)
    is_max = windows == windows.max(axis=(3, 5), keepdims=True)
    expected = (is_max * pool_cot[:, :, :, None, :, None]).reshape(img.shape)
    np.testing.assert_array_equal(g, expected)  # one product per element: exact


def test_he_normal_variance():
    w = layers.he_normal(np.random.default_rng(2), (400, 50), fan_in=50)
    # 20000 draws: the sample variance has relative standard error sqrt(2 / 20000) = 1%;
    # 5% is five standard errors.
    assert abs(w.var() / (2.0 / 50) - 1.0) < 0.05
    with pytest.raises(ValueError, match="fan_in"):
        layers.he_normal(np.random.default_rng(0), (2, 2), fan_in=0)


# ------------------------------------------------------------------------------ norm wiring


def test_pn_moves_the_affine_into_pn_act_and_drops_the_shift_without_activation():
    spec = parse_norm("gn+pn", groups=2)
    params, state = init_norm(spec, 4, followed_by_activation=True)
    assert set(params) == {"gamma", "beta", "gamma_tilde", "beta_tilde"} and not state
    params, _ = init_norm(spec, 4, followed_by_activation=False)
    assert set(params) == {"gamma"}
    params, _ = init_norm(parse_norm("gn"), 4, followed_by_activation=False)
    assert set(params) == {"gamma", "beta"}
    params, state = init_norm(parse_norm("bn"), 4, followed_by_activation=True)
    assert set(state) == {"running_mean", "running_var"}
    assert init_norm(parse_norm("none"), 4, followed_by_activation=True) == ({}, {})


def test_scale_only_norm_output():
    """Without an activation, a PN variant's norm is gamma * normalized(x): no shift."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 3, 3))
    gamma = rng.normal(size=4)
    out, _ = apply_norm(parse_norm("ln+pn"), x, {"gamma": gamma}, {}, activation=None,
                        training=True)
    flat = x.reshape(2, -1)
    xhat = ((flat - flat.mean(1, keepdims=True))
            / np.sqrt(flat.var(1, keepdims=True) + 1e-5)).reshape(x.shape)
    # float64, same formula in a different order: rounding only
    np.testing.assert_allclose(out, gamma[None, :, None, None] * xhat, rtol=1e-10, atol=1e-12)


def test_batch_norm_running_statistics_and_eval_mode():
    rng = np.random.default_rng(4)
    spec = parse_norm("bn")
    params, state = init_norm(spec, 3, followed_by_activation=True)
    x = 2.0 + 3.0 * rng.normal(size=(8, 3, 2, 2))
    _, new_state = apply_norm(spec, x, params, state, activation="relu", training=True)
    mean = x.mean(axis=(0, 2, 3))
    var_unbiased = x.var(axis=(0, 2, 3), ddof=1)
    # PyTorch convention: momentum 0.1, unbiased running variance; float64 rounding only
    np.testing.assert_allclose(new_state["running_mean"], 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(new_state["running_var"], 0.9 + 0.1 * var_unbiased, rtol=1e-12)
    # eval mode: each sample's output does not depend on the rest of the batch
    full, same_state = apply_norm(spec, x, params, new_state, activation="relu", training=False)
    alone, _ = apply_norm(spec, x[:1], params, new_state, activation="relu", training=False)
    np.testing.assert_array_equal(full[:1], alone)
    assert same_state is new_state
    expected = np.maximum((x - 0.1 * mean[None, :, None, None])
                          / np.sqrt(new_state["running_var"][None, :, None, None] + 1e-5), 0)
    np.testing.assert_allclose(full, expected, rtol=1e-12, atol=1e-14)  # rounding only


def test_cnn_train_mode_updates_every_bn_layer_state():
    model = CNN(in_channels=1, num_classes=3, widths=(4, 4), norm="bn", residual=True)
    params, state = model.init(np.random.default_rng(5))
    x = np.random.default_rng(6).normal(size=(4, 1, 4, 4))
    _, new_state = model.apply(params, state, x, training=True)
    assert set(new_state) == set(state) and len(state) == 2 * 3 * 2
    for name in state:
        assert not np.array_equal(new_state[name], state[name]), name


def test_ws_standardizes_the_weights_the_layer_uses():
    """ln+ws: the conv sees standardized filters, so scaling a weight changes nothing."""
    model = CNN(in_channels=1, num_classes=3, widths=(4,), norm="ln+ws")
    params, state = model.init(np.random.default_rng(7))
    x = np.random.default_rng(8).normal(size=(2, 1, 4, 4))
    scaled = dict(params, **{"stage0.conv.weight": 5.0 * params["stage0.conv.weight"] + 1.0})
    a, _ = model.apply(params, state, x, training=True)
    b, _ = model.apply(scaled, state, x, training=True)
    # WS removes the affine change of the weights exactly up to eps=1e-10 and rounding
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_builds_and_runs(norm):
    model = CNN(in_channels=1, num_classes=3, widths=(4, 8), norm=norm, residual=True)
    params, state = model.init(np.random.default_rng(9))
    logits, _ = model.apply(params, state, np.ones((2, 1, 4, 4)) * np.arange(4.0), training=True)
    assert logits.shape == (2, 3) and np.all(np.isfinite(logits))


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="norm must be one of"):
        CNN(in_channels=1, num_classes=3, norm="pn")
    with pytest.raises(ValueError, match="norm='in'"):
        MLP(in_features=4, num_classes=3, norm="in")
    with pytest.raises(ValueError, match="groups=4 must divide"):
        CNN(in_channels=1, num_classes=3, widths=(6,), norm="gn").init(np.random.default_rng(0))
    with pytest.raises(ValueError, match="widths"):
        CNN(in_channels=1, num_classes=3, widths=(0,))
    with pytest.raises(ValueError, match="x must have shape"):
        model = CNN(in_channels=2, num_classes=3, widths=(4,))
        model.apply(*model.init(np.random.default_rng(0)), np.ones((1, 1, 4, 4)), training=True)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


# ----------------------------------------------------------------------------- optimization


def test_softmax_cross_entropy_matches_definition():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = np.array([1, 0])
    expected = np.mean(
        [-np.log(np.exp(r[y]) / np.exp(r).sum()) for r, y in zip(logits, labels, strict=True)]
    )
    # the library's shifted log-sum-exp vs this naive log of a softmax, O(1) logits: rounding
    np.testing.assert_allclose(softmax_cross_entropy(logits, labels), expected, rtol=1e-14)


def test_sgd_momentum_and_selective_weight_decay():
    params = {"conv.weight": np.array([1.0]), "norm.gamma": np.array([2.0]),
              "norm.gamma_tilde": np.array([3.0])}
    grads = {k: np.array([0.5]) for k in params}
    opt = SGD(momentum=0.9, weight_decay=0.1, decay_proxy=True)
    p1 = opt.step(params, grads, lr=0.1)
    p2 = opt.step(p1, grads, lr=0.1)
    # hand computation: v1 = g + wd p0; p1 = p0 - lr v1; v2 = 0.9 v1 + g + wd p1
    for name, decayed in (("conv.weight", True), ("norm.gamma", False),
                          ("norm.gamma_tilde", True)):
        p0 = params[name][0]
        v1 = 0.5 + (0.1 * p0 if decayed else 0.0)
        q1 = p0 - 0.1 * v1
        v2 = 0.9 * v1 + 0.5 + (0.1 * q1 if decayed else 0.0)
        assert p2[name][0] == pytest.approx(q1 - 0.1 * v2, rel=1e-14), name  # rounding only
    no_proxy = SGD(momentum=0.0, weight_decay=0.1, decay_proxy=False)
    assert no_proxy.step(params, grads, lr=1.0)["norm.gamma_tilde"][0] == 2.5


def test_cosine_lr():
    assert cosine_lr(0, 100, 0.4) == 0.4
    assert cosine_lr(50, 100, 0.4) == pytest.approx(0.2, rel=1e-15)  # cos(pi/2) rounding
    assert cosine_lr(100, 100, 0.4) == pytest.approx(0.0, abs=1e-15)
    # pi * 25 / 100 and pi / 4 may differ by an ulp of the argument: rounding only.
    assert cosine_lr(25, 100, 1.0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2, rel=1e-15)


# ------------------------------------------------------------------------------------- data


def test_synthetic_data_is_seeded_and_standardized():
    a = synthetic_images(200, seed=3)
    b = synthetic_images(200, seed=3)
    c = synthetic_images(200, seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (160, 1, 8, 8) and a.x_test.shape == (40, 1, 8, 8)
    # standardized with the training split's own statistics: exact up to rounding
    assert abs(a.x_train.mean()) < 1e-12 and abs(a.x_train.std() - 1) < 1e-12
    assert set(np.unique(a.y_train)) == {0, 1, 2, 3}


def test_minibatches_cover_each_sample_once():
    x = np.arange(10.0)[:, None]
    y = np.arange(10)
    batches = list(iterate_minibatches(x, y, 3, rng=np.random.default_rng(0)))
    assert len(batches) == 3  # the incomplete last batch is dropped
    seen = np.concatenate([yb for _, yb in batches])
    assert len(set(seen)) == 9 and not np.array_equal(seen, np.arange(9))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)
    assert len(list(iterate_minibatches(x, y, 3, drop_last=False))) == 4
    with pytest.raises(ValueError, match="batch_size"):
        list(iterate_minibatches(x, y, 0))


def test_digits_if_scikit_learn_is_installed():
    pytest.importorskip("sklearn", reason="scikit-learn (pnref[data]) not installed")
    from pnref.nn import digits

    data = digits()
    assert len(data.y_train) + len(data.y_test) == 1797
    assert data.in_shape == (1, 8, 8) and data.num_classes == 10


# ---------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def small_data():
    return synthetic_images(400, num_classes=4, seed=0)


def test_training_learns_and_is_reproducible(small_data):
    config = TrainConfig(model="cnn", norm="gn+pn", batch_size=16, epochs=3, lr=0.05,
                         model_options={"widths": (8, 8)})
    first = train(config, small_data, progress=False)
    second = train(config, small_data, progress=False)
    # chance is 25% on 4 classes; the templates are learnable within 3 epochs
    assert first["test_accuracy"] > 0.8
    assert first["test_accuracy"] == second["test_accuracy"]
    assert first["train_loss"] == second["train_loss"]
    assert not first["diverged"] and first["steps"] == 3 * (320 // 16)


def test_mlp_with_batch_norm_trains(small_data):
    config = TrainConfig(model="mlp", norm="bn", batch_size=8, epochs=2, lr=0.05,
                         model_options={"hidden": (32,)})
    result = train(config, small_data, progress=False)
    assert result["test_accuracy"] > 0.7  # chance 25%


def test_progress_bar_draws_to_its_stream():
    stream = io.StringIO()
    bar = ProgressBar(4, "job", stream=stream, width=4)
    for _ in range(4):
        bar.update(1, "x")
    bar.close()
    assert "job [####] 4/4 x" in stream.getvalue() and stream.getvalue().endswith("\n")


def test_cli_train_writes_json(tmp_path, capsys):
    from pnref.cli import main

    out = tmp_path / "metrics.json"
    code = main(["train", "--model", "cnn", "--norm", "ln+pn", "--batch-size", "16",
                 "--epochs", "1", "--widths", "4", "4", "--dataset", "synthetic",
                 "--output", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["config"]["norm"] == "ln+pn" and 0.0 <= metrics["test_accuracy"] <= 1.0
    captured = capsys.readouterr()
    assert "test accuracy" in captured.out
    assert "[" in captured.err and "/50" in captured.err  # the progress bar, on stderr
