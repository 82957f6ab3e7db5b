"""SGD with momentum and plain L2 weight decay, and a cosine schedule.

Which parameters are decayed is decided by name (`decay_mask`): weights of dense and
convolution layers, and PN's gamma~ / beta~ (the official code decays these, pulling the
proxy towards Normal(0, 1)); never gamma, beta or biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SGD", "cosine_lr", "decay_mask"]


def decay_mask(name: str, *, decay_proxy: bool = True) -> bool:
    """Whether the parameter called ``name`` gets weight decay."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "weight":
        return True
    if leaf in ("gamma_tilde", "beta_tilde"):
        return decay_proxy
    return False


def cosine_lr(step: int, total_steps: int, base_lr: float) -> float:
    """Cosine learning-rate schedule from ``base_lr`` down to 0.

    Equations
    ---------
    lr(t) = base_lr * (1 + cos(pi * t / T)) / 2,   t = 0 .. T - 1
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


@dataclass
class SGD:
    """Stochastic gradient descent with heavy-ball momentum and L2 weight decay.

    Parameters
    ----------
    momentum : float
    weight_decay : float
        L2 coefficient, applied to the parameters `decay_mask` selects.
    decay_proxy : bool
        Whether gamma~ / beta~ are decayed (official PN code: yes).

    Equations
    ---------
    g = grad + weight_decay * p  (decayed parameters only)
    v = momentum * v + g
    p = p - lr * v
    """

    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_proxy: bool = True
    velocity: dict[str, np.ndarray] = field(default_factory=dict)
    flat_velocity: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def step_flat(self, vector: np.ndarray, grad: np.ndarray, lr: float,
                  decayed: np.ndarray) -> np.ndarray:
        """`step` on every parameter at once, laid out in one flat vector.

        ``decayed`` is a boolean vector of the layout (`decay_mask` of each entry's
        parameter). Each entry goes through the same operations as in `step`, so the
        results are the same bits; the velocity is kept as one vector (``flat_velocity``).
        """
        if self.weight_decay:
            grad = np.where(decayed, grad + self.weight_decay * vector, grad)
        previous = self.flat_velocity if self.flat_velocity is not None else 0.0
        velocity = self.momentum * previous + grad
        self.flat_velocity = velocity
        return vector - lr * velocity

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
             lr: float) -> dict[str, np.ndarray]:
        """Return updated parameters (``params`` is not modified)."""
        updated = {}
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay and decay_mask(name, decay_proxy=self.decay_proxy):
                g = g + self.weight_decay * p
            v = self.momentum * self.velocity.get(name, 0.0) + g
            self.velocity[name] = v
            updated[name] = p - lr * v
        return updated
