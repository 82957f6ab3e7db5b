"""Small, readable networks and training on top of pnref's autograd primitives (layer 4).

Parameters are plain dicts of arrays; see `pnref.nn.models` for the MLP and CNN,
`pnref.nn.norm_layer` for how each norm (and PN) is wired, `pnref.nn.train` for
the loop, `pnref.nn.flat_params` for its gradients and `pnref.nn.data` for the data sets.
"""

from pnref.nn.data import Dataset, digits, iterate_minibatches, load_dataset, synthetic_images
from pnref.nn.flat_params import value_and_grad_of_params
from pnref.nn.models import CNN, MLP, build_model
from pnref.nn.norm_layer import NORMS
from pnref.nn.optim import SGD, cosine_lr
from pnref.nn.train import (
    DIVERGENCE_FACTOR,
    TrainConfig,
    TrainingInterrupted,
    evaluate,
    softmax_cross_entropy,
    train,
)

__all__ = [
    "DIVERGENCE_FACTOR",
    "CNN",
    "MLP",
    "NORMS",
    "SGD",
    "Dataset",
    "TrainConfig",
    "TrainingInterrupted",
    "build_model",
    "cosine_lr",
    "digits",
    "evaluate",
    "iterate_minibatches",
    "load_dataset",
    "softmax_cross_entropy",
    "synthetic_images",
    "train",
    "value_and_grad_of_params",
]
