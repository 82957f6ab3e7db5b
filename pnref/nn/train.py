"""Training loop: softmax cross-entropy, SGD with momentum, cosine schedule, evaluation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pnref._progress import ProgressBar
from pnref.nn import layers
from pnref.nn.data import Dataset, iterate_minibatches
from pnref.nn.flat_params import FlatLayout, value_and_grad_of_vector
from pnref.nn.models import CNN, MLP, build_model
from pnref.nn.optim import SGD, cosine_lr, decay_mask

__all__ = [
    "DIVERGENCE_FACTOR",
    "TrainConfig",
    "TrainingInterrupted",
    "softmax_cross_entropy",
    "evaluate",
    "make_loss",
    "train",
    "single_threaded_blas",
]


#: Training stops as diverged when a step's loss is not finite or exceeds this multiple of the
#: first step's loss. The first loss of a classifier at initialization is about log(classes)
#: (2.3 for ten classes); a hundred times that means logits wrong by hundreds, from which SGD
#: with a decaying learning rate does not come back in these small runs.
DIVERGENCE_FACTOR = 100.0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `train`: a KeyboardInterrupt that carries the metrics of the steps done.

    Attributes
    ----------
    metrics : dict
        What `train` returns, for the parameters reached, with ``"interrupted": True``.
    """

    def __init__(self, metrics: dict) -> None:
        super().__init__("training interrupted")
        self.metrics = metrics


def softmax_cross_entropy(logits: Any, labels: np.ndarray) -> Any:
    """Mean cross-entropy of integer ``labels`` under ``softmax(logits)``.

    One autograd primitive with its hand VJP (`pnref.nn.layers.softmax_cross_entropy`).

    ``logits`` is an (N, classes) array, or autograd's traced stand-in for one while a
    gradient is taken (hence ``Any``); the result is a scalar of the same kind.

    Equations
    ---------
    loss = mean_i [ logsumexp(logits_i) - logits_i[labels_i] ]
    """
    return layers.softmax_cross_entropy(logits, labels)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run.

    Attributes
    ----------
    model : str
        ``"cnn"`` or ``"mlp"``.
    norm : str
        See `pnref.nn.norm_layer`.
    batch_size, epochs, seed : int
        The seed fixes initialization and shuffling.
    lr : float
        Peak learning rate of the cosine schedule.
    momentum, weight_decay : float
    decay_proxy : bool
        Weight decay on gamma~ / beta~ (official PN code: yes).
    model_options : dict
        Passed to the model (``widths``, ``hidden``, ``groups``, ``residual``, ``backend``).
    """

    model: str = "cnn"
    norm: str = "gn+pn"
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_proxy: bool = True
    model_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def make_loss(model: CNN | MLP, state_holder: dict) -> Callable[..., Any]:
    """``loss(params, x, y)`` in training mode; stores the new model state in ``state_holder``.

    The new state (batch-norm running statistics) is computed outside autograd's trace.
    """

    def loss(params, x, y):
        logits, new_state = model.apply(params, state_holder["state"], x, training=True)
        state_holder["new_state"] = new_state
        return softmax_cross_entropy(logits, y)

    return loss


def evaluate(model: CNN | MLP, params: dict, state: dict, x: np.ndarray, y: np.ndarray,
             batch_size: int = 256) -> dict[str, float]:
    """Loss and accuracy in evaluation mode (batch norm uses its running statistics)."""
    total_loss = 0.0
    correct = 0
    for xb, yb in iterate_minibatches(x, y, batch_size, drop_last=False):
        logits, _ = model.apply(params, state, xb, training=False)
        total_loss += float(softmax_cross_entropy(logits, yb)) * len(yb)
        correct += int(np.sum(np.argmax(logits, axis=1) == yb))
    return {"loss": total_loss / len(y), "accuracy": correct / len(y)}


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread when ``threadpoolctl`` is installed (it comes with pnref[data]).

    The matrices of these small networks are far too small to gain from BLAS threads, and on
    a busy 2-core machine the threads make a training step several times slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def train(config: TrainConfig, data: Dataset, *, progress: bool = True) -> dict:
    """Train ``config.model`` on ``data`` and return the final metrics.

    BLAS runs single-threaded meanwhile when threadpoolctl is installed
    (`single_threaded_blas`).

    Returns
    -------
    dict
        ``config`` (as a dict), ``dataset``, ``train_loss`` (mean over the last epoch's
        steps), ``train_accuracy``, ``test_loss``, ``test_accuracy`` (evaluation mode),
        ``steps``, ``seconds``, ``diverged`` (training stopped early because a step's loss
        was not finite or exceeded `DIVERGENCE_FACTOR` times the first step's loss),
        ``interrupted`` (False here; see below).

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C (KeyboardInterrupt) during the steps; its ``metrics`` are the same dict for
        the steps done, with ``"interrupted": True``.
    """
    with single_threaded_blas():
        return _train(config, data, progress=progress)


def _train(config: TrainConfig, data: Dataset, *, progress: bool) -> dict:
    """The training loop behind `train`."""
    if config.batch_size > len(data.y_train):
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {len(data.y_train)} training samples"
        )
    model = build_model(config.model, in_shape=data.in_shape, num_classes=data.num_classes,
                        norm=config.norm, **config.model_options)
    rng = np.random.default_rng(config.seed)
    params, state = model.init(rng)
    optimizer = SGD(momentum=config.momentum, weight_decay=config.weight_decay,
                    decay_proxy=config.decay_proxy)
    holder = {"state": state}
    # The parameters (every model initializes them in float64) and SGD's velocity stay one
    # flat vector between steps; the dict is rebuilt once, for the evaluation.
    layout = FlatLayout(params)
    vector = layout.flatten(params)
    decayed = layout.entry_mask(lambda name: decay_mask(name, decay_proxy=config.decay_proxy))
    value_and_grad = value_and_grad_of_vector(make_loss(model, holder), layout)
    steps_per_epoch = len(data.y_train) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    bar = ProgressBar(total_steps, f"{config.model} {config.norm} b{config.batch_size}",
                      enabled=progress)
    start = time.perf_counter()
    step = 0
    diverged = interrupted = False
    first_loss = None
    epoch_losses: list[float] = []
    try:
        for epoch in range(config.epochs):
            epoch_losses = []
            for xb, yb in iterate_minibatches(data.x_train, data.y_train, config.batch_size,
                                              rng=rng):
                loss, grad_vector = value_and_grad(vector, xb, yb)
                loss = float(loss)
                first_loss = loss if first_loss is None else first_loss
                if not np.isfinite(loss) or loss > DIVERGENCE_FACTOR * first_loss:
                    diverged = True
                    break
                vector = optimizer.step_flat(vector, grad_vector,
                                             cosine_lr(step, total_steps, config.lr), decayed)
                holder["state"] = holder["new_state"]
                epoch_losses.append(loss)
                step += 1
                bar.update(1, f"epoch {epoch + 1}/{config.epochs} "
                              f"mean loss {np.mean(epoch_losses):.4f}")
            if diverged:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    params = layout.split(vector)
    train_metrics = evaluate(model, params, holder["state"], data.x_train, data.y_train)
    test_metrics = evaluate(model, params, holder["state"], data.x_test, data.y_test)
    metrics = {
        "config": asdict(config),
        "dataset": data.name,
        "train_loss": float(np.mean(epoch_losses)) if epoch_losses else float("nan"),
        "train_accuracy": train_metrics["accuracy"],
        "test_loss": test_metrics["loss"],
        "test_accuracy": test_metrics["accuracy"],
        "steps": step,
        "seconds": seconds,
        "diverged": diverged,
        "interrupted": interrupted,
    }
    if interrupted:
        raise TrainingInterrupted(metrics)
    return metrics
