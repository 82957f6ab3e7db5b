"""Generate a golden suite: case files and manifest from the case specs and the float64 reference.

For each case: inputs are drawn from the case's seeded generator and **rounded to the case's
dtype first**; the expected outputs and gradients are then computed in float64 from those
rounded inputs, by pnref's NumPy math core (or by the mpmath oracle for exact proxy moments);
a random cotangent, rounded to the dtype too, drives the VJP.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pnref._version import __version__
from pnref.golden import oracle_values
from pnref.golden.cases import CaseSpec, suite_cases
from pnref.golden.conditioning import grouped_condition, pn_condition
from pnref.golden.format import (
    FORMAT_NAME,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    array_sha256,
    seal_manifest,
    write_case_file,
    write_manifest,
)
from pnref.golden.ops import OPS, activation_of
from pnref.golden.profiles import PROFILES
from pnref.golden.tolerances import (
    FACTORS,
    KINDS,
    Tolerance,
    montecarlo_tolerance,
    tolerance_for,
)
from pnref.moments import proxy_moments

__all__ = ["generate_suite", "generate_case", "provenance"]

#: Smallest allowed relative distance of a pre-activation from a kink, in units of the case
#: dtype's epsilon times the norm's conditioning (see _check_kinks).
KINK_MARGIN = 4.0


def provenance() -> dict[str, str]:
    """Versions and platform a suite was generated with."""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    return {
        "pnref": __version__,
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "mpmath": version("mpmath"),
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
    }


def _f64(inputs: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    return None if name not in inputs else inputs[name].astype(np.float64)


def _params64(inputs):
    return [_f64(inputs, k) for k in ("gamma", "beta", "gamma_tilde", "beta_tilde")]


def _norm_condition(op: str, inputs, attrs) -> float:
    x = inputs["x"] if "x" in inputs else None
    if op in ("batch_norm", "instance_norm", "group_norm", "layer_norm"):
        groups = {"batch_norm": None, "instance_norm": None, "layer_norm": 1}.get(
            op, attrs.get("groups"))
        return grouped_condition(x, attrs["axis"], groups, attrs["eps"],
                                 over_batch=op == "batch_norm")
    if op == "weight_standardization":
        w = np.moveaxis(inputs["w"].astype(np.float64), attrs["axis"], 0)
        return grouped_condition(w.reshape(w.shape[0], 1, -1), 1, 1, attrs["eps"])
    if op == "batch_norm_eval":
        moved = np.moveaxis(x.astype(np.float64), attrs["axis"], -1)
        largest = np.maximum(np.abs(moved.reshape(-1, moved.shape[-1])).max(axis=0),
                             np.abs(inputs["running_mean"].astype(np.float64)))
        return float(1.0 + np.max(largest / np.sqrt(inputs["running_var"] + attrs["eps"])))
    raise KeyError(op)


def _block_norm_condition(inputs, attrs) -> float:
    norm = attrs["norm"]
    groups = {"bn": None, "in": None, "ln": 1, "gn": attrs.get("groups")}[norm]
    return grouped_condition(inputs["x"], attrs["axis"], groups, attrs["norm_eps"],
                             over_batch=norm == "bn")


def _normalized(inputs, attrs) -> np.ndarray:
    """The block's normalized input, float64, from the reference norm without affine."""
    spec = OPS["norm_act"]
    identity = {**attrs, "activation": "identity", "activation_params": {}}
    return spec.forward({"x": inputs["x"]}, identity)["out"]


def _pre_activation(y64, inputs, axis) -> np.ndarray:
    shape = [1] * y64.ndim
    shape[axis] = -1
    return inputs["gamma"].astype(np.float64).reshape(shape) * y64 + inputs["beta"].astype(
        np.float64).reshape(shape)


class KinkTooClose(RuntimeError):
    """A case's data put a pre-activation next to a kink; the generator redraws them."""


#: Mean of the random cotangents: not 0, since zero-mean cotangents hide mistakes in the
#: mean terms of a backward pass (the gradient of a normalization subtracts the cotangent's
#: mean; an implementation that forgets it is exact on zero-mean cotangents).
COTANGENT_MEAN = 0.5

#: Draws tried per case before giving up on finding data away from kinks.
MAX_DRAWS = 16


def _check_kinks(case: CaseSpec, z: np.ndarray, scale: np.ndarray, margin: float) -> None:
    """Refuse data that put a pre-activation next to a kink of the activation.

    There the derivative jumps, and any correct implementation may land on either side,
    so the expected gradient would not be well defined to the tolerance. The generator
    then draws the case's data again from the next seed.
    """
    act = activation_of(case.attrs)
    for kink in act.kinks:
        distance = np.abs(z - kink) / np.maximum(scale, np.finfo(np.float64).tiny)
        # a pre-activation that is the kink because both of its terms are exactly 0 (a
        # constant group normalizes to exactly 0, times beta = 0) is the kink in every
        # implementation: its derivative is the convention's (the left one), well defined
        distance = np.where((scale == 0) & (z == kink), np.inf, distance)
        if distance.size and distance.min() < margin:
            raise KinkTooClose(
                f"golden case {case.case_id}: a pre-activation lies within {distance.min():.2e}"
                f" (relative) of the kink at {kink}; change the case's data"
            )


def _quantile_kink_check(case: CaseSpec, inputs) -> None:
    attrs = case.attrs
    if attrs.get("method") != "quantile":
        return
    from pnref.moments.quantile import points

    gamma, beta, gamma_tilde, beta_tilde = _params64(inputs)
    gamma_tilde = 0.0 if gamma_tilde is None else gamma_tilde
    beta_tilde = 0.0 if beta_tilde is None else beta_tilde
    m = (gamma * beta_tilde + beta)[:, None]
    s = np.abs(gamma * (1.0 + gamma_tilde))[:, None]
    u = points(int(attrs["n"]))[None, :]
    z = m + s * u
    # points (s = 0) sitting exactly on one value are fine unless that value is the kink
    _check_kinks(case, z, np.abs(m) + s * np.abs(u), 1e-5)


def _condition_and_guards(case: CaseSpec, inputs) -> tuple[float, float | None]:
    """The case's conditioning number and, for PN cases, PN-Act's own part of it.

    Raises `KinkTooClose` when the data put a pre-activation next to a kink.
    """
    op, attrs = case.op, case.attrs
    if op == "batch_norm_running_update":
        x = inputs["x"].astype(np.float64)
        expected_mean = OPS[op].forward(inputs, attrs)["new_running_mean"]
        rms = float(np.sqrt(np.mean(expected_mean**2)))
        return float(1.0 + np.abs(x).max() / max(rms, np.finfo(np.float64).tiny)), None
    if op == "proxy_moments":
        _quantile_kink_check(case, inputs)
        return 1.0, 1.0
    if op in ("pn_act", "norm_pn_act", "norm_act"):
        norm_cond = 1.0
        if op == "pn_act":
            y64 = inputs["y"].astype(np.float64)
        else:
            norm_cond = _block_norm_condition(inputs, attrs)
            y64 = _normalized(inputs, attrs)
        axis = attrs["axis"]
        if "gamma" in inputs and "beta" in inputs:
            z = _pre_activation(y64, inputs, axis)
            shape = [1] * y64.ndim
            shape[axis] = -1
            scale = (np.abs(inputs["gamma"].astype(np.float64).reshape(shape) * y64)
                     + np.abs(inputs["beta"].astype(np.float64).reshape(shape)))
            margin = KINK_MARGIN * float(np.finfo(np.dtype(case.dtype)).eps) * norm_cond
            _check_kinks(case, z, scale, margin)
        if op == "norm_act":
            return norm_cond, None
        _quantile_kink_check(case, inputs)
        act = activation_of(attrs)
        kwargs = {"method": attrs["method"], "n": attrs["n"]}
        mean, var = proxy_moments(act, *_params64(inputs), **kwargs)
        own = pn_condition(act.f(z), mean, var, attrs["eps"], axis)
        return norm_cond * own, own
    return _norm_condition(op, inputs, attrs), None


def _expected(case: CaseSpec, inputs, cotangents):
    """Expected outputs and gradients (float64) of one case."""
    spec = OPS[case.op]
    if case.expected_from == "oracle":
        act = activation_of(case.attrs)
        params = _params64(inputs)
        mean, var = oracle_values.exact_moments(act, *params)
        outputs = {"mean": mean, "var": var}
        grads = {}
        if cotangents:
            grads = oracle_values.exact_moments_vjp(
                cotangents["mean"].astype(np.float64), cotangents["var"].astype(np.float64),
                act, *params)
        return outputs, grads
    outputs = {k: np.asarray(v, dtype=np.float64) for k, v in spec.forward(inputs, case.attrs)
               .items()}
    grads = {}
    if cotangents:
        grads = {k: np.asarray(v, dtype=np.float64)
                 for k, v in spec.vjp(inputs, case.attrs, cotangents).items()}
    return outputs, grads


def _has_vjp(case: CaseSpec) -> bool:
    return OPS[case.op].differentiable and case.attrs.get("method") != "montecarlo"


def _tolerances(case: CaseSpec, inputs, condition: float,
                moments_condition: float | None) -> dict[str, Tolerance]:
    spec = OPS[case.op]
    method = case.attrs.get("method")
    tolerances: dict[str, Tolerance] = {}
    if method == "montecarlo":
        se_mean, se_var = oracle_values.montecarlo_standard_errors(
            activation_of(case.attrs), *_params64(inputs), samples=int(case.attrs["n"]))
        tolerances["expected.mean"] = montecarlo_tolerance("statistics", se_mean,
                                                           case.attrs["n"])
        tolerances["expected.var"] = montecarlo_tolerance("statistics", se_var,
                                                          case.attrs["n"])
        return tolerances
    for name, kind in spec.outputs:
        tolerances[f"expected.{name}"] = tolerance_for(
            kind, case.dtype, condition=condition, method=method,
            moments_condition=moments_condition)
    if _has_vjp(case):
        for name in spec.inputs:
            if name in inputs:
                tolerances[f"expected_grad.{name}"] = tolerance_for(
                    spec.grad_kind(name), case.dtype, condition=condition, method=method,
                    moments_condition=moments_condition)
    return tolerances


def generate_case(case: CaseSpec) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and manifest entry of one case.

    Returns
    -------
    arrays : dict
        ``input.<name>``, ``cotangent.<output>``, ``expected.<output>`` and
        ``expected_grad.<input>`` arrays.
    entry : dict
        The case's manifest entry (without the array checksums' file name).
    """
    spec = OPS[case.op]
    dtype = np.dtype(case.dtype)
    for draw in range(MAX_DRAWS):
        seed = case.seed + draw
        rng = np.random.default_rng(seed)
        raw = case.build(rng)
        unknown = set(raw) - set(spec.inputs)
        if unknown:
            raise RuntimeError(f"case {case.case_id} builds unknown inputs {sorted(unknown)}")
        inputs = {name: np.asarray(raw[name]).astype(dtype) for name in spec.inputs
                  if name in raw}
        try:
            condition, moments_condition = _condition_and_guards(case, inputs)
            break
        except KinkTooClose:
            if draw == MAX_DRAWS - 1:
                raise
    cotangents: dict[str, np.ndarray] = {}
    if _has_vjp(case):
        forward = spec.forward(inputs, case.attrs) if case.expected_from != "oracle" else None
        for name, _kind in spec.outputs:
            shape = forward[name].shape if forward is not None else inputs["gamma"].shape
            cotangents[name] = (COTANGENT_MEAN + rng.standard_normal(shape)).astype(dtype)
    outputs, grads = _expected(case, inputs, cotangents)
    arrays = {f"input.{k}": v for k, v in inputs.items()}
    arrays.update({f"cotangent.{k}": v for k, v in cotangents.items()})
    arrays.update({f"expected.{k}": v for k, v in outputs.items()})
    arrays.update({f"expected_grad.{k}": v for k, v in grads.items()})
    tolerances = _tolerances(case, inputs, condition, moments_condition)
    missing = set(tolerances) ^ {k for k in arrays if k.startswith("expected")}
    if missing:
        raise RuntimeError(f"case {case.case_id}: expected arrays and tolerances differ: "
                           f"{sorted(missing)}")
    axis = case.attrs.get("axis")
    entry = {
        "id": case.case_id,
        "op": case.op,
        "profile": case.profile,
        "conventions": case.conventions,
        "dtype": case.dtype,
        "layout": {1: "channels_first", -1: "channels_last"}.get(axis, "none"),
        "seed": seed,
        "attrs": case.attrs,
        "description": case.description,
        "edge_cases": list(case.edge),
        "expected_from": case.expected_from,
        "condition": condition,
        **({} if moments_condition is None else {"moments_condition": moments_condition}),
        "file": f"{case.case_id}.npz",
        "arrays": {
            key: {"sha256": array_sha256(value), "dtype": value.dtype.name,
                  "shape": list(value.shape)}
            for key, value in sorted(arrays.items())
        },
        "tolerances": {key: tol.to_json() for key, tol in sorted(tolerances.items())},
    }
    return arrays, entry


def _prepare_directory(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    existing = [p for p in out.iterdir() if not p.name.startswith(".")]
    if not existing:
        return
    if not (out / MANIFEST_NAME).exists():
        raise FileExistsError(
            f"--out {out} is not empty and holds no golden suite; refusing to overwrite it"
        )
    for path in existing:
        if path.suffix == ".npz" or path.name == MANIFEST_NAME:
            path.unlink()


def generate_suite(out: str | Path, suite: str = "canonical", *,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Generate the named suite into directory ``out``; return its manifest.

    The manifest is sealed with its digest (`pnref.golden.format.seal_manifest`).

    Parameters
    ----------
    out : str or Path
        Output directory; created if absent. If it already holds a golden suite, that
        suite's files are replaced; any other non-empty directory is refused.
    suite : str
        A key of `pnref.golden.cases.SUITES`.
    progress : callable, optional
        Called as ``progress(done, total)`` after each case is computed.
    """
    cases = suite_cases(suite)
    generated = []
    for case in cases:  # every case is computed before out is touched
        generated.append(generate_case(case))
        if progress is not None:
            progress(len(generated), len(cases))
    out = Path(out)
    _prepare_directory(out)
    entries = []
    for arrays, entry in generated:
        write_case_file(out / entry["file"], arrays)
        entries.append(entry)
    manifest = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "suite": suite,
        "provenance": provenance(),
        "profiles": {name: profile["description"] for name, profile in PROFILES.items()},
        "tolerance_policy": {
            "kinds": KINDS,
            "factors": FACTORS,
            "document": "docs/golden-format.md",
        },
        "cases": entries,
    }
    write_manifest(out, seal_manifest(manifest))
    return manifest
