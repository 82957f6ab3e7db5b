"""The case set of the golden suites: which op, under which profile, on which inputs.

Each `CaseSpec` is deterministic: its inputs come from a NumPy generator seeded from
the case id (CRC-32), so a suite regenerates identically. Shapes are kept small (at most a
few hundred elements) so the bundled suite stays far under its 5 MB budget and verifies in
seconds, yet every profile, op, dtype and edge case of ``shared/conventions.md`` appears.

Suites
------
``canonical``
    Everything below; committed in ``pnref/data/golden/canonical``.
``norms``
    The normalization cases only (no proxy moments, so no mpmath needed to generate).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pnref.golden.profiles import profile_conventions

__all__ = ["CaseSpec", "SUITES", "all_cases", "suite_cases"]

Builder = Callable[[np.random.Generator], dict[str, np.ndarray]]

_NORM_OPS = frozenset(
    {"batch_norm", "instance_norm", "group_norm", "layer_norm", "batch_norm_running_update",
     "batch_norm_eval", "weight_standardization"}
)


@dataclass(frozen=True)
class CaseSpec:
    """One golden case before generation.

    Attributes
    ----------
    case_id : str
        Unique id, also the case file's stem (``[a-z0-9._-]``).
    op : str
        Op name (a key of `pnref.golden.ops.OPS`).
    profile : str
        Convention profile (a key of `pnref.golden.profiles.PROFILES`).
    dtype : str
        ``"float16"``, ``"float32"`` or ``"float64"``: the inputs are rounded to it.
    attrs : dict
        The op's attributes, passed to adapters as they are.
    build : callable
        ``build(rng) -> dict`` of float64 inputs before rounding.
    description : str
        What the case is for.
    edge : tuple of str
        Edge-case labels (``"large_offset"``, ``"constant_group"`` ...).
    expected_from : str
        ``"reference"`` (pnref's float64 math core) or ``"oracle"`` (mpmath exact moments).
    """

    case_id: str
    op: str
    profile: str
    dtype: str
    attrs: dict[str, Any]
    build: Builder
    description: str
    edge: tuple[str, ...] = ()
    expected_from: str = "reference"
    conventions: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """First seed of the case's generator: CRC-32 of its id (the generator moves to the
        next seed when a draw puts a pre-activation next to a kink; the manifest records the
        seed used)."""
        return zlib.crc32(self.case_id.encode())


_SHORT = {"float16": "f16", "float32": "f32", "float64": "f64"}


def _case(op, profile, variant, dtype, attrs, build, description, edge=(), **kw) -> CaseSpec:
    case_id = f"{op}.{profile}.{variant}.{_SHORT[dtype]}"
    return CaseSpec(case_id, op, profile, dtype, dict(attrs), build, description, tuple(edge),
                    conventions=profile_conventions(profile), **kw)


def _shape(batch: int, channels: int, spatial: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return (batch, *spatial, channels) if axis == -1 else (batch, channels, *spatial)


def _affine(rng, channels, inputs, with_beta=True):
    inputs["gamma"] = 1.0 + 0.3 * rng.standard_normal(channels)
    if with_beta:
        inputs["beta"] = 0.5 * rng.standard_normal(channels)
    return inputs


# --------------------------------------------------------------------------- normalizations


#: Default spread of drawn norm inputs: small enough that an eps of 1e-5 changes the output by
#: ~1e-4 relative (at a spread of 2 eps placement and value are below float32's tolerance),
#: with a non-zero mean (zero-mean data hides mistakes in the mean terms).
_NORM_SCALE = 0.25


def _norm_builder(shape, channels, *, loc=0.5, scale=_NORM_SCALE, affine=True, affine_size=None,
                  integer_spread=None, constant_group=None, axis=1):
    """Inputs of a grouped norm: x, and gamma/beta of size ``affine_size or channels``."""

    def build(rng):
        if integer_spread is not None:
            x = loc + rng.integers(0, integer_spread, size=shape).astype(np.float64)
        else:
            x = loc + scale * rng.standard_normal(shape)
        if constant_group is not None:
            # sample 0, channels [lo, hi) all equal: a group with variance 0
            lo, hi, value = constant_group
            moved = np.moveaxis(x, axis, 1)
            moved[0, lo:hi] = value
        inputs = {"x": x}
        if affine:
            _affine(rng, affine_size or channels, inputs)
        return inputs

    return build


def _norm_cases() -> list[CaseSpec]:
    cases: list[CaseSpec] = []
    sp = (3, 3)

    def add(op, profile, variant, dtypes, *, channels=8, batch=2, spatial=sp, groups=None,
            description, edge=(), eps=None, **builder_kw):
        conv = profile_conventions(profile)
        axis = conv["axis"]
        affine_size = None
        attrs = {"axis": axis, "eps": conv["norm_eps"] if eps is None else eps}
        if op == "group_norm":
            attrs["groups"] = groups
            attrs["affine"] = conv.get("affine", "per_channel")
            if attrs["affine"] == "per_group":
                affine_size = groups
        shape = _shape(batch, channels, spatial, axis)
        build = _norm_builder(shape, channels, affine_size=affine_size, axis=axis,
                              **builder_kw)
        for dtype in dtypes:
            cases.append(_case(op, profile, variant, dtype, attrs, build, description, edge))

    all3 = ("float16", "float32", "float64")
    f32_64 = ("float32", "float64")
    # profiles
    add("group_norm", "official", "g4", all3, groups=4,
        description="GN with 4 groups, channels-last, eps 1e-3 (official baseline)")
    add("layer_norm", "official", "ln", all3,
        description="LN as GN with one group, channels-last, eps 1e-3")
    for op in ("batch_norm", "instance_norm", "layer_norm"):
        add(op, "torch", "basic", f32_64, description=f"{op}, channels-first, eps 1e-5")
    add("group_norm", "torch", "g4", all3, groups=4, description="GN 4 groups, channels-first")
    add("group_norm", "keras", "g2", f32_64, groups=2, description="Keras GN: eps 1e-3, NHWC")
    add("layer_norm", "keras", "ln", ("float32",), description="Keras LN: eps 1e-3, NHWC")
    add("group_norm", "flax", "g4", f32_64, groups=4, description="Flax GN: eps 1e-6, NHWC")
    add("group_norm", "onnx18", "g4", f32_64, groups=4,
        description="ONNX GN-18: scale and bias per group, shape (G)")
    add("group_norm", "onnx21", "g4", f32_64, groups=4,
        description="ONNX GN-21: scale and bias per channel, shape (C)")
    # edge cases
    add("layer_norm", "torch", "offset40000", f32_64, loc=40000.0, integer_spread=4,
        description="rows like [40000, 40001, 40002, 40003]: one-pass variance cancels",
        edge=("large_offset",))
    add("group_norm", "torch", "offset100-spread1e-3", f32_64, groups=4, loc=100.0, scale=1e-3,
        description="mean 100, spread 1e-3: one-pass variance is garbage",
        edge=("large_offset",))
    add("batch_norm", "torch", "offset1234", f32_64, loc=1234.0, scale=1.0,
        description="BN with mean 1234, spread 1", edge=("large_offset",))
    add("group_norm", "torch", "float16-overflow", ("float16",), groups=4, loc=300.0,
        scale=20.0, description="float16 input whose sum of squares overflows float16",
        edge=("float16_overflow", "large_offset"))
    add("group_norm", "torch", "constant-group", f32_64, groups=4,
        constant_group=(0, 2, 1234.0),
        description="one group constant 1234.0 (variance 0, eps > 0; gradient at var 0)",
        edge=("constant_group",))
    add("group_norm", "torch", "g1", f32_64, groups=1, description="G = 1 (equals LN)",
        edge=("G=1",))
    add("group_norm", "torch", "gc", f32_64, groups=8, description="G = C (equals IN)",
        edge=("G=C",))
    add("group_norm", "official", "batch1", f32_64, groups=4, batch=1,
        description="batch of one", edge=("batch_of_one",))
    add("batch_norm", "torch", "batch1", f32_64, batch=1, spatial=(2, 3),
        description="BN with a batch of one (statistics over space)", edge=("batch_of_one",))
    add("instance_norm", "torch", "rank2", f32_64, batch=3, spatial=(),
        description="rank-2 (N, C): a single spatial position, IN gives y = beta",
        edge=("single_position", "constant_group"))
    add("batch_norm", "torch", "rank2", f32_64, batch=5, spatial=(),
        description="rank-2 (N, C) batch norm", edge=("single_position",))
    add("group_norm", "torch", "c6-g3", f32_64, channels=6, groups=3,
        description="odd group size: C = 6, G = 3", edge=("odd_channels",))
    add("layer_norm", "torch", "c5", f32_64, channels=5, spatial=(2, 2),
        description="odd channel count C = 5", edge=("odd_channels",))
    add("group_norm", "torch", "eps0.5", ("float32",), groups=4, eps=0.5,
        description="large eps 0.5", edge=("large_eps",))
    add("layer_norm", "torch", "eps1e-12", ("float64",), eps=1e-12,
        description="tiny eps 1e-12", edge=("tiny_eps",))
    add("group_norm", "torch", "no-affine", ("float32",), groups=2, affine=False,
        description="gamma and beta absent", edge=("no_affine",))
    add("group_norm", "torch", "empty-batch", ("float32",), groups=4, batch=0,
        description="empty batch (N = 0): empty output, zero parameter gradients",
        edge=("empty_batch",))
    # a spread of 0.05 (variance 2.5e-3): eps 1e-5 then moves the output by ~1e-3 relative,
    # so eps placement and value are visible in float32 (at a spread of 2 they are not)
    for op, groups in (("batch_norm", None), ("instance_norm", None), ("layer_norm", None),
                       ("group_norm", 4)):
        add(op, "torch", "small-spread", ("float32",), groups=groups, loc=0.1, scale=0.05,
            description="non-zero mean, spread 0.05: where eps 1e-5 shows",
            edge=("small_variance",))
    # mean 400 times the spread: a one-pass variance errs by ~1.6e5 roundings there
    add("instance_norm", "torch", "offset100", f32_64, loc=100.0,
        description="IN with mean 100, spread 0.25: one-pass variance fails",
        edge=("large_offset",))
    add("layer_norm", "official", "offset30", ("float16",), loc=30.0,
        description="float16 LN with mean 30, spread 0.25: one-pass float16 variance fails "
        "(float32 statistics expected)", edge=("large_offset",))
    add("group_norm", "torch", "f16-eps-underflow", ("float16",), groups=4, eps=1e-8,
        constant_group=(0, 2, 3.0),
        description="float16 with eps = 1e-8, which is 0 in float16, on a constant group: "
        "eps must be added in float32 or the output is NaN",
        edge=("eps_underflows_float16", "constant_group"))
    return cases


def _running_cases() -> list[CaseSpec]:
    cases = []
    for profile in ("torch", "keras", "tf_fused", "flax", "onnx15"):
        conv = profile_conventions(profile)
        axis = conv["axis"]
        attrs = {"axis": axis, "momentum": conv["momentum"],
                 "momentum_convention": conv["momentum_convention"]}
        shape = _shape(4, 6, (2, 2), axis)

        def build(rng, shape=shape):
            return {
                "x": 0.5 + 2.0 * rng.standard_normal(shape),
                "running_mean": 0.3 * rng.standard_normal(6),
                "running_var": 0.5 + rng.random(6),
            }

        for dtype in ("float32", "float64"):
            cases.append(_case("batch_norm_running_update", profile, "basic", dtype, attrs, build,
                               f"running statistics, {conv['momentum_convention']} convention, "
                               f"momentum {conv['momentum']}"))
    attrs = {"axis": 1, "momentum": 0.99, "momentum_convention": "tf"}

    def single(rng):
        return {"x": rng.standard_normal((1, 4)), "running_mean": np.zeros(4),
                "running_var": np.ones(4)}

    cases.append(_case("batch_norm_running_update", "keras", "single-value", "float64",
                       {**attrs, "axis": -1}, single,
                       "one value per channel: biased batch variance 0 (the torch convention "
                       "refuses such a batch)", ("single_value_per_channel",)))

    def eval_build(rng):
        return {"x": 0.5 + 2.0 * rng.standard_normal((2, 8, 3, 3)),
                "running_mean": 0.5 * rng.standard_normal(8),
                "running_var": 0.5 + 3.0 * rng.random(8),
                "gamma": 1.0 + 0.3 * rng.standard_normal(8),
                "beta": 0.5 * rng.standard_normal(8)}

    for dtype in ("float32", "float64"):
        cases.append(_case("batch_norm_eval", "torch", "basic", dtype, {"axis": 1, "eps": 1e-5},
                           eval_build, "BN in evaluation mode with given running statistics"))

    def eval_small_build(rng):
        inputs = eval_build(rng)
        inputs["running_var"] = 1e-3 * (1.0 + rng.random(8))
        inputs["x"] = (inputs["running_mean"][:, None, None]
                       + 0.05 * rng.standard_normal((2, 8, 3, 3)))
        return inputs

    cases.append(_case("batch_norm_eval", "torch", "small-var", "float32",
                       {"axis": 1, "eps": 1e-5}, eval_small_build,
                       "running variance ~1e-3: eps 1e-5 placement and value show in float32",
                       ("small_variance",)))
    return cases


def _ws_cases() -> list[CaseSpec]:
    def build(rng):
        return {"w": 0.05 + 0.2 * rng.standard_normal((6, 4, 3, 3))}

    return [
        _case("weight_standardization", "exact", "conv", dtype, {"axis": 0, "eps": 1e-10}, build,
              "weight standardization of a (C_out, C_in, 3, 3) filter bank, eps 1e-10")
        for dtype in ("float32", "float64")
    ]


# --------------------------------------------------------------------------- proxy moments

#: (gamma, beta, gamma_tilde, beta_tilde) per channel: a negative gamma included.
_MOMENT_PARAMS = np.array([
    [1.2, 0.3, 0.15, 0.2],
    [-0.7, -0.4, -0.25, 0.1],
    [0.9, -1.5, 0.3, -0.35],
])


def _moment_builder(params: np.ndarray) -> Builder:
    """The moment parameters as inputs; a two-column ``params`` has no gamma~/beta~."""
    def build(rng):
        names = ("gamma", "beta", "gamma_tilde", "beta_tilde")[:params.shape[1]]
        return {k: params[:, i].copy() for i, k in enumerate(names)}

    return build


def _moment_cases() -> list[CaseSpec]:
    cases = []
    build = _moment_builder(_MOMENT_PARAMS)
    acts = [("relu", {}), ("silu", {}), ("gelu", {}), ("leaky_relu", {"alpha": 0.1})]
    for name, params in acts:
        tag = name if not params else f"{name}{params['alpha']:g}"
        base = {"activation": name, "activation_params": params}
        for dtype in ("float32", "float64"):
            cases.append(_case("proxy_moments", "official", tag, dtype,
                               {**base, "method": "quantile", "n": 200}, build,
                               "the official estimator: 200 quantile points"))
        cases.append(_case("proxy_moments", "official", f"{tag}-n16", "float64",
                           {**base, "method": "quantile", "n": 16}, build,
                           "the quantile estimator with n = 16 (large bias, still exact)"))
        exact_method = "exact" if name != "silu" else "quadrature"
        cases.append(_case("proxy_moments", "exact", tag, "float64",
                           {**base, "method": exact_method, "n": None}, build,
                           f"exact moments (method {exact_method!r}) judged by the mpmath oracle",
                           expected_from="oracle"))
    for name in ("relu", "gelu"):
        base = {"activation": name, "activation_params": {}}
        cases.append(_case("proxy_moments", "exact", f"{name}-quadrature", "float64",
                           {**base, "method": "quadrature", "n": None}, build,
                           "quadrature moments judged by the mpmath oracle",
                           expected_from="oracle"))
        cases.append(_case("proxy_moments", "exact", f"{name}-montecarlo", "float64",
                           {**base, "method": "montecarlo", "n": 100_000, "montecarlo_seed": 0},
                           build, "Monte Carlo moments judged against the oracle, statistical "
                           "tolerance", expected_from="oracle"))
    no_tilde = _moment_builder(_MOMENT_PARAMS[:, :2])
    for dtype in ("float32", "float64"):
        cases.append(_case("proxy_moments", "official", "relu-no-tilde", dtype,
                           {"activation": "relu", "activation_params": {}, "method": "quantile",
                            "n": 200}, no_tilde,
                           "gamma~ and beta~ absent (fixed at 0): the common port",
                           ("no_tilde",)))
    cases.append(_case("proxy_moments", "exact", "relu", "float32",
                       {"activation": "relu", "activation_params": {}, "method": "exact",
                        "n": None}, build, "exact ReLU moments of float32 parameters",
                       expected_from="oracle"))
    return cases


# --------------------------------------------------------------------------- PN-Act and blocks


#: Mean of PN-Act's drawn input y: not 0, since zero-mean data hides some mistakes.
_PN_Y_MEAN = 0.25


def _pn_builder(shape, channels, *, gamma=None, beta=None, tilde=True, axis=1) -> Builder:
    def build(rng):
        inputs = {"y": _PN_Y_MEAN + rng.standard_normal(shape)}
        inputs["gamma"] = (1.0 + 0.3 * rng.standard_normal(channels)
                           if gamma is None else np.asarray(gamma, dtype=np.float64))
        inputs["beta"] = (0.3 * rng.standard_normal(channels)
                          if beta is None else np.asarray(beta, dtype=np.float64))
        if tilde:
            inputs["gamma_tilde"] = 0.3 * rng.standard_normal(channels)
            inputs["beta_tilde"] = 0.3 * rng.standard_normal(channels)
        return inputs

    return build


def _pn_attrs(profile: str, name: str, params: dict, method: str | None = None) -> dict:
    conv = profile_conventions(profile)
    method = conv["method"] if method is None else method
    return {"activation": name, "activation_params": params, "eps": conv["pn_eps"],
            "method": method, "n": conv["n"] if method == "quantile" else None,
            "axis": conv["axis"]}


def _pn_cases() -> list[CaseSpec]:
    cases = []
    acts = [("relu", {}, ("float16", "float32", "float64")), ("silu", {}, ("float32", "float64")),
            ("gelu", {}, ("float32",)), ("leaky_relu", {"alpha": 0.2}, ("float64",))]
    for name, params, dtypes in acts:
        attrs = _pn_attrs("official", name, params)
        build = _pn_builder(_shape(2, 8, (3, 3), -1), 8, axis=-1)
        for dtype in dtypes:
            cases.append(_case("pn_act", "official", name, dtype, attrs, build,
                               f"PN-Act with {name}, official settings"))
    attrs = _pn_attrs("official", "relu", {})
    for dtype in ("float32", "float64"):
        cases.append(_case("pn_act", "official", "relu-no-tilde", dtype, attrs,
                           _pn_builder(_shape(2, 8, (3, 3), -1), 8, axis=-1, tilde=False),
                           "official settings without gamma~/beta~ (fixed at 0): the common "
                           "port", ("no_tilde",)))
    attrs = _pn_attrs("torch", "relu", {})
    cases += [_case("pn_act", "torch", "relu", dt, attrs, _pn_builder((2, 8, 3, 3), 8), "PN-Act "
                    "channels-first") for dt in ("float32", "float64")]
    cases.append(_case("pn_act", "torch", "no-tilde", "float32", attrs,
                       _pn_builder((2, 8, 3, 3), 8, tilde=False),
                       "gamma_tilde and beta_tilde absent (fixed at 0)", ("no_tilde",)))
    for name, method in (("relu", "exact"), ("gelu", "exact"), ("silu", "quadrature")):
        cases.append(_case("pn_act", "exact", name, "float64",
                           _pn_attrs("exact", name, {}, method), _pn_builder((2, 8, 3, 3), 8),
                           f"PN-Act with exact moments ({method})"))
    extreme = {"gamma": [0.0, -1.5, 1.0, 2.0, 0.8, -0.4, 1.3, 0.0],
               "beta": [0.5, 0.3, -8.0, -3.0, 0.2, -0.6, 0.1, -0.25]}
    for profile in ("official", "exact"):
        ext_attrs = _pn_attrs(profile, "relu", {})
        shape = _shape(2, 8, (3, 3), ext_attrs["axis"])
        for dtype in ("float32", "float64") if profile == "official" else ("float64",):
            cases.append(_case("pn_act", profile, "extreme-params", dtype, ext_attrs,
                               _pn_builder(shape, 8, axis=ext_attrs["axis"], **extreme),
                               "gamma = 0, gamma < 0, beta far negative (ReLU almost always "
                               "off)", ("gamma_zero", "gamma_negative", "beta_far_negative")))
    cases.append(_case("pn_act", "torch", "rank2-c7", "float64", attrs,
                       _pn_builder((5, 7), 7), "rank-2 input (single position), C = 7",
                       ("single_position", "odd_channels")))
    return cases


def _block_builder(shape, channels, *, pn=True, loc=0.5, scale=_NORM_SCALE, tilde=True,
                   constant_group=None) -> Builder:
    """Block inputs; ``constant_group=(lo, hi, value)`` makes sample 0's channels [lo, hi)
    all ``value`` (channels-first) and their beta 0: pre-activations exactly at 0."""
    def build(rng):
        inputs = {"x": loc + scale * rng.standard_normal(shape)}
        inputs["gamma"] = 1.0 + 0.3 * rng.standard_normal(channels)
        inputs["beta"] = 0.3 * rng.standard_normal(channels)
        if constant_group is not None:
            lo, hi, value = constant_group
            inputs["x"][0, lo:hi] = value
            inputs["beta"][lo:hi] = 0.0
        if pn and tilde:
            inputs["gamma_tilde"] = 0.3 * rng.standard_normal(channels)
            inputs["beta_tilde"] = 0.3 * rng.standard_normal(channels)
        return inputs

    return build


def _block_cases() -> list[CaseSpec]:
    cases = []

    def block_attrs(profile, norm, groups, name, method=None, pn=True):
        conv = profile_conventions(profile)
        attrs = {"norm": norm, "groups": groups, "norm_eps": conv["norm_eps"],
                 "activation": name, "activation_params": {}, "axis": conv["axis"]}
        if pn:
            full = _pn_attrs(profile, name, {}, method)
            attrs.update(eps=full["eps"], method=full["method"], n=full["n"])
        return attrs

    for norm, groups in (("gn", 4), ("ln", None)):
        for name in ("relu", "silu"):
            attrs = block_attrs("official", norm, groups, name)
            build = _block_builder(_shape(2, 8, (3, 3), -1), 8)
            for dtype in ("float32", "float64"):
                cases.append(_case("norm_pn_act", "official", f"{norm}-{name}", dtype, attrs,
                                   build, f"{norm.upper()} then PN-Act ({name}), official"))
    for dtype in ("float32", "float64"):
        cases.append(_case("norm_pn_act", "official", "gn-relu-no-tilde", dtype,
                           block_attrs("official", "gn", 4, "relu"),
                           _block_builder(_shape(2, 8, (3, 3), -1), 8, tilde=False),
                           "GN then PN-Act without gamma~/beta~ (fixed at 0): the common port",
                           ("no_tilde",)))
    cases.append(_case("norm_pn_act", "official", "gn-relu", "float16",
                       block_attrs("official", "gn", 4, "relu"),
                       _block_builder(_shape(2, 8, (3, 3), -1), 8),
                       "GN then PN-Act in float16 (float32 statistics expected)"))
    for dtype in ("float32", "float64"):
        cases.append(_case("norm_pn_act", "torch", "gn-relu", dtype,
                           block_attrs("torch", "gn", 4, "relu"),
                           _block_builder((2, 8, 3, 3), 8), "GN then PN-Act, channels-first"))
        cases.append(_case("norm_pn_act", "torch", "ln-offset", dtype,
                           block_attrs("torch", "ln", None, "relu"),
                           _block_builder((2, 8, 3, 3), 8, loc=1000.0, scale=1.0),
                           "LN + PN-Act on inputs with a large offset", ("large_offset",)))
    cases.append(_case("norm_pn_act", "exact", "gn-relu", "float64",
                       block_attrs("exact", "gn", 4, "relu"), _block_builder((2, 8, 3, 3), 8),
                       "GN then PN-Act with exact moments"))
    for profile, norm, groups, name in (("official", "gn", 4, "relu"), ("torch", "bn", None,
                                        "relu"), ("torch", "in", None, "silu")):
        for dtype in ("float32", "float64"):
            cases.append(_case("norm_act", profile, f"{norm}-{name}", dtype,
                               block_attrs(profile, norm, groups, name, pn=False),
                               _block_builder(_shape(2, 8, (3, 3), profile_conventions(
                                   profile)["axis"]), 8, pn=False),
                               f"{norm.upper()} with affine then {name}: a baseline block"))
    for dtype in ("float32", "float64"):
        cases.append(_case("norm_act", "torch", "gn-relu-zero", dtype,
                           block_attrs("torch", "gn", 4, "relu", pn=False),
                           _block_builder((2, 8, 3, 3), 8, pn=False, loc=100.0,
                                          constant_group=(0, 2, 1234.0)),
                           "a constant group with beta 0: pre-activations exactly 0, where "
                           "ReLU's derivative is the convention's (0, the left one); the "
                           "other groups have mean 100", ("constant_group", "kink_exactly",
                                                          "large_offset")))
    cases.append(_case("norm_pn_act", "official", "gn-silu-offset4", "float16",
                       block_attrs("official", "gn", 4, "silu"),
                       _block_builder(_shape(2, 8, (3, 3), -1), 8, loc=4.0),
                       "float16 GN + PN-Act (SiLU: no kink) with mean 4, spread 0.25: float32 "
                       "statistics expected", ("large_offset",)))
    return cases


def all_cases() -> list[CaseSpec]:
    """Every case of the canonical suite, in a fixed order."""
    cases = (_norm_cases() + _running_cases() + _ws_cases() + _moment_cases() + _pn_cases()
             + _block_cases())
    ids = [c.case_id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise RuntimeError(f"duplicate golden case ids: {sorted(duplicates)}")
    return cases


#: Suite names and the predicate selecting their cases.
SUITES: dict[str, Callable[[CaseSpec], bool]] = {
    "canonical": lambda case: True,
    "norms": lambda case: case.op in _NORM_OPS,
}


def suite_cases(suite: str) -> list[CaseSpec]:
    """The cases of a named suite.

    Raises
    ------
    ValueError
        If ``suite`` is not a key of `SUITES`.
    """
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {suite!r}")
    return [case for case in all_cases() if SUITES[suite](case)]
