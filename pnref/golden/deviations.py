"""The catalogue of known deviations: each way to get a normalization or PN-Act wrong.

Every `Deviation` has a stable id (used in verify reports and by third parties), a
one-line description, the ops it applies to, and one or more `Variant` s (the
concrete mistakes: e.g. ``proxy-points-n`` with n = 256, 100 or the channel count). A variant
says how to compute what an implementation making that mistake outputs for a golden case:

- ``attrs``: a change of the case's attributes (another ``n``, another eps, another
  activation), the reference itself then computes the deviant answer;
- ``drop``: inputs the implementation ignores (their gradients are then 0);
- ``knobs``: switches of the deviant autograd model (`pnref.golden.deviant_model`), for
  mistakes inside a step (eps outside the square root, unbiased variance ...);
- ``zero_param_grads``: the parameter gradients are returned as zeros.

Variants of two deviations combine (`combine`) when they do not touch the same switch;
`deviant_outputs` evaluates a variant or a combination on a case.

The ids come from issue 12 and ``shared/conventions.md``; ``docs/verification.md`` lists them
with real diagnosis output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pnref.golden.deviant_model import Knobs, model_outputs
from pnref.golden.ops import OPS

__all__ = ["Deviation", "Variant", "CATALOGUE", "DEVIATIONS", "applicable", "combine",
           "deviant_outputs"]

AttrChange = Callable[[Mapping[str, Any], Mapping[str, np.ndarray]], dict[str, Any] | None]


@dataclass(frozen=True)
class Variant:
    """One concrete form of a mistake.

    Attributes
    ----------
    label : str
        What this variant does, e.g. ``"n = 256"``.
    knobs : dict
        Fields of `pnref.golden.deviant_model.Knobs` to set.
    attrs : callable or None
        ``attrs(case_attrs, inputs) -> new attrs`` (``None`` if not applicable to the case).
    drop : tuple of str
        Inputs the implementation ignores.
    zero_param_grads : bool
        Parameter gradients returned as zeros.
    ops : frozenset or None
        Restricts the variant to these ops (``None``: every op of its deviation).
    """

    label: str
    knobs: dict[str, Any] = field(default_factory=dict)
    attrs: AttrChange | None = None
    drop: tuple[str, ...] = ()
    zero_param_grads: bool = False
    ops: frozenset[str] | None = None


@dataclass(frozen=True)
class Deviation:
    """A catalogued mistake: ``id``, ``description``, the ``ops`` it applies to, its variants."""

    id: str
    description: str
    ops: frozenset[str]
    variants: tuple[Variant, ...]


_NORMS = frozenset({"batch_norm", "instance_norm", "group_norm", "layer_norm"})
_NORM_BLOCKS = frozenset({"norm_act", "norm_pn_act"})
_WITH_STATS = _NORMS | _NORM_BLOCKS | {"weight_standardization"}
_PN = frozenset({"proxy_moments", "pn_act", "norm_pn_act"})
_PN_OUT = frozenset({"pn_act", "norm_pn_act"})
_ACTIVATED = _PN | {"norm_act"}


def _quantile(change: Callable[[Mapping[str, Any], Mapping[str, np.ndarray]], dict | None]
              ) -> AttrChange:
    """An attribute change that only applies to cases using the quantile estimator."""
    def apply(attrs, inputs):
        return change(attrs, inputs) if attrs.get("method") == "quantile" else None
    return apply


def _points(n: int | str) -> AttrChange:
    def change(attrs, inputs):
        count = int(inputs["gamma"].shape[0]) if n == "channels" else int(n)
        return None if count == int(attrs["n"]) else {**attrs, "n": count}
    return _quantile(change)


def _set(key: str, value) -> AttrChange:
    def change(attrs, inputs):
        if key not in attrs or attrs[key] == value:
            return None
        return {**attrs, key: value}
    return change


def _norm_eps(value: float) -> AttrChange:
    def change(attrs, inputs):
        key = "norm_eps" if "norm_eps" in attrs else "eps"
        if key not in attrs or float(attrs[key]) == value:
            return None
        return {**attrs, key: value}
    return change


def _gelu_swap(attrs, inputs):
    other = {"gelu": "gelu_tanh", "gelu_tanh": "gelu"}.get(attrs.get("activation"))
    if other is None:
        return None
    changed = {**attrs, "activation": other}
    if changed.get("method") == "exact":  # no closed form for tanh-GELU: split quadrature
        changed["method"] = "quadrature"
    return changed


def _kinked(attrs, inputs):
    return dict(attrs) if attrs.get("activation") in ("relu", "leaky_relu") else None


def _per_channel_groups(attrs, inputs):
    per_channel = attrs.get("affine", "per_channel") == "per_channel"
    grouped = attrs.get("groups") is not None and attrs.get("norm", "gn") == "gn"
    return dict(attrs) if per_channel and grouped and "gamma" in inputs else None


def _float16_case(attrs, inputs):
    return dict(attrs) if np.result_type(*inputs.values()) == np.float16 else None


def _with_tildes(attrs, inputs):
    return dict(attrs) if {"gamma_tilde", "beta_tilde"} & set(inputs) else None


def _with_param_grads(attrs, inputs):
    return dict(attrs)


_DEVIATIONS = [
    Deviation("quantile-offset-eps",
              "quantile levels (i + eps) / n instead of (i + 1/2) / n", _PN,
              (Variant("offset 1e-5", {"quantile_offset": 1e-5}, _quantile(_with_param_grads)),
               Variant("offset 1e-3", {"quantile_offset": 1e-3}, _quantile(_with_param_grads)))),
    Deviation("proxy-points-n", "another number of quantile points than the case's n", _PN,
              (Variant("n = 256", attrs=_points(256)), Variant("n = 100", attrs=_points(100)),
               Variant("n = channel count", attrs=_points("channels")))),
    Deviation("unbiased-proxy-variance", "proxy variance divided by n - 1 instead of n", _PN,
              (Variant("n - 1", {"proxy_ddof": 1}, _quantile(_with_param_grads)),)),
    Deviation("unbiased-norm-variance",
              "normalization variance divided by count - 1 instead of count", _WITH_STATS,
              (Variant("count - 1", {"norm_ddof": 1}),)),
    Deviation("eps-outside-sqrt", "1 / (sqrt(var) + eps) instead of 1 / sqrt(var + eps)",
              _WITH_STATS | _PN_OUT | {"batch_norm_eval"},
              (Variant("in the norm", {"norm_eps_outside": True},
                       ops=_WITH_STATS | {"batch_norm_eval"}),
               Variant("in PN-Act", {"pn_eps_outside": True}, ops=_PN_OUT),
               Variant("in the norm and in PN-Act",
                       {"norm_eps_outside": True, "pn_eps_outside": True},
                       ops=frozenset({"norm_pn_act"})))),
    Deviation("pn-eps-value", "PN-Act eps 1e-5 or 1e-3 where the case's (official 0.03) is meant",
              _PN_OUT,
              (Variant("eps 1e-5", attrs=_set("eps", 1e-5)),
               Variant("eps 1e-3", attrs=_set("eps", 1e-3)))),
    Deviation("no-moments-gradient",
              "no gradient through the proxy moments (stop-gradient on mean and variance)", _PN,
              (Variant("stop-gradient", {"moments_gradient": False}),)),
    Deviation("tildes-ignored", "gamma~ and beta~ never reach the proxy (their gradients 0)",
              _PN, (Variant("tildes dropped", attrs=_with_tildes,
                            drop=("gamma_tilde", "beta_tilde")),)),
    Deviation("activation-twice", "the activation applied again to PN-Act's output", _PN_OUT,
              (Variant("phi(PN-Act)", {"activation_twice": True}),)),
    Deviation("one-pass-variance", "norm variance as E[x^2] - E[x]^2 in the case's dtype",
              _WITH_STATS,
              (Variant("one-pass", {"norm_variance": "one-pass"}),
               Variant("one-pass, clipped at 0", {"norm_variance": "one-pass-clipped"}))),
    Deviation("per-group-affine",
              "the first G entries of the per-channel gamma/beta used one per group",
              frozenset({"group_norm", "norm_act"}),
              (Variant("per group", {"per_group_affine": True}, _per_channel_groups),)),
    Deviation("channel-axis",
              "normalization statistics over the wrong axis (channels-first vs channels-last)",
              frozenset({"batch_norm", "instance_norm", "group_norm"}) | _NORM_BLOCKS,
              (Variant("axis 1 <-> -1", {"channel_axis_swapped": True}),)),
    Deviation("running-var-bias",
              "running variance updated with the biased batch variance instead of the "
              "unbiased one, or the reverse", frozenset({"batch_norm_running_update"}),
              (Variant("bias flipped", {"running_bias_flipped": True}),)),
    Deviation("momentum-convention", "running-statistics momentum m where 1 - m is meant",
              frozenset({"batch_norm_running_update"}),
              (Variant("m <-> 1 - m", {"momentum_flipped": True}),)),
    Deviation("zero-parameter-gradients", "gradients of every parameter returned as zeros",
              frozenset(OPS) - {"batch_norm_running_update"},
              (Variant("zeros", attrs=_with_param_grads, zero_param_grads=True),)),
    Deviation("relu-derivative-at-zero",
              "ReLU / leaky ReLU derivative 1 at exactly 0 (the convention is the left one)",
              _ACTIVATED, (Variant("phi'(0) = 1", {"kink_derivative_one": True}, _kinked),)),
    Deviation("gelu-approximation", "GELU by its tanh approximation where erf is meant, or the "
              "reverse", _ACTIVATED, (Variant("tanh <-> erf", attrs=_gelu_swap),)),
    # from shared/conventions.md
    Deviation("norm-eps-value",
              "another framework's default norm eps (PyTorch 1e-5, Keras 1e-3, Flax 1e-6)",
              _NORMS | _NORM_BLOCKS | {"batch_norm_eval"},
              (Variant("eps 1e-5", attrs=_norm_eps(1e-5)),
               Variant("eps 1e-3", attrs=_norm_eps(1e-3)),
               Variant("eps 1e-6", attrs=_norm_eps(1e-6)))),
    Deviation("unbiased-std-plus-eps",
              "(x - mean) / (unbiased std + eps): the popular tutorial LayerNorm", _WITH_STATS,
              (Variant("std(ddof=1) + eps", {"norm_ddof": 1, "norm_eps_outside": True}),)),
    Deviation("float16-statistics",
              "float16 inputs normalized with float16 statistics and eps (eps may round to 0)",
              _WITH_STATS,
              (Variant("float16", {"norm_variance": "float16"}, _float16_case),)),
]

#: Every deviation, in catalogue order.
CATALOGUE: tuple[Deviation, ...] = tuple(_DEVIATIONS)
#: Deviations by id.
DEVIATIONS: dict[str, Deviation] = {d.id: d for d in CATALOGUE}


def applicable(deviation: Deviation, op: str) -> list[Variant]:
    """The variants of ``deviation`` that apply to ``op``."""
    if op not in deviation.ops:
        return []
    return [v for v in deviation.variants if v.ops is None or op in v.ops]


def combine(first: Variant, second: Variant) -> Variant | None:
    """Both mistakes at once, or ``None`` if they set the same switch or attribute."""
    if set(first.knobs) & set(second.knobs):
        return None

    def attrs(case_attrs, inputs):
        changed = dict(case_attrs)
        for variant in (first, second):
            if variant.attrs is not None:
                step = variant.attrs(changed, inputs)
                if step is None:
                    return None
                changed = step
        return changed

    return Variant(f"{first.label}; {second.label}", {**first.knobs, **second.knobs}, attrs,
                   first.drop + second.drop, first.zero_param_grads or second.zero_param_grads)


def reference_outputs(op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
                      cotangents: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """pnref's float64 answer for a case, keyed as in a case file (``expected.y``,
    ``expected_grad.x``); gradients only when ``cotangents`` are given."""
    spec = OPS[op]
    with np.errstate(all="ignore"):
        outputs = {f"expected.{k}": np.asarray(v, dtype=np.float64)
                   for k, v in spec.forward(inputs, attrs).items()}
        if cotangents and spec.vjp is not None:
            outputs.update({f"expected_grad.{k}": np.asarray(v, dtype=np.float64)
                            for k, v in spec.vjp(inputs, attrs, cotangents).items()})
    return outputs


def _reference(op, inputs, attrs, cotangents):
    try:
        return reference_outputs(op, inputs, attrs, cotangents)
    except (ValueError, TypeError, NotImplementedError):
        return None  # the reference refuses the modified attributes: mistake not applicable


def deviant_outputs(op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
                    cotangents: Mapping[str, np.ndarray] | None, variant: Variant
                    ) -> dict[str, np.ndarray] | None:
    """What an implementation making the mistake ``variant`` returns for a case.

    Parameters
    ----------
    op, inputs, attrs, cotangents
        The case (as in a case file: inputs in the case's dtype).
    variant : Variant
        The mistake (from `applicable` or `combine`).

    Returns
    -------
    dict or None
        ``{"expected.<output>": ..., "expected_grad.<input>": ...}`` in float64 (not rounded
        to the case's dtype), or ``None`` if the mistake cannot be made on this case.
    """
    attrs = dict(attrs)
    if variant.attrs is not None:
        attrs = variant.attrs(attrs, inputs)
        if attrs is None:
            return None
    present = {k: v for k, v in inputs.items() if k not in variant.drop}
    if variant.knobs:
        outputs = model_outputs(op, present, attrs, cotangents, Knobs(**variant.knobs))
    else:
        outputs = _reference(op, present, attrs, cotangents)
    if outputs is None:
        return None
    spec = OPS[op]
    if cotangents and spec.vjp is not None:
        for name in variant.drop:
            if name in inputs:
                outputs[f"expected_grad.{name}"] = np.zeros(inputs[name].shape)
        if variant.zero_param_grads:
            for name in inputs:
                if spec.grad_kind(name) == "param_grad":
                    outputs[f"expected_grad.{name}"] = np.zeros(inputs[name].shape)
    return outputs


def _check_fields() -> None:
    names = {f.name for f in dataclasses.fields(Knobs)}
    for deviation in CATALOGUE:
        for variant in deviation.variants:
            unknown = set(variant.knobs) - names
            if unknown:
                raise RuntimeError(f"{deviation.id}: unknown knobs {sorted(unknown)}")


_check_fields()
