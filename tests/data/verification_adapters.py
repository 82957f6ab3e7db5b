"""Adapters for the verification tests: an honest one and hostile or partial variants.

Loaded by ``pnref golden verify --impl tests/data/verification_adapters.py:<Class>`` (in
the worker process) or imported by the tests.
"""

import os
import sys
import time

import numpy as np

from pnref.golden.ops import OPS


def _cast(arrays, inputs):
    dtype = np.result_type(*inputs.values())
    return {k: np.asarray(v).astype(dtype) for k, v in arrays.items()}


class Reference:
    """pnref's float64 reference math, returned in the case's dtype: passes every case."""

    name = "reference"

    def forward(self, op, inputs, attrs):
        return _cast(OPS[op].forward(inputs, attrs), inputs)

    def vjp(self, op, inputs, attrs, cotangents):
        return _cast(OPS[op].vjp(inputs, attrs, cotangents), inputs)


class Hangs(Reference):
    """group_norm never returns."""

    def forward(self, op, inputs, attrs):
        if op == "group_norm":
            time.sleep(3600)
        return super().forward(op, inputs, attrs)


class Exits(Reference):
    """group_norm calls sys.exit(3)."""

    def forward(self, op, inputs, attrs):
        if op == "group_norm":
            sys.exit(3)
        return super().forward(op, inputs, attrs)


class Dies(Reference):
    """group_norm ends the process without a word (as a crash in native code would)."""

    def forward(self, op, inputs, attrs):
        if op == "group_norm":
            os._exit(7)
        return super().forward(op, inputs, attrs)


class BrokenConstructor(Reference):
    """Cannot even be built."""

    def __init__(self):
        raise RuntimeError("no accelerator found")


class PnOnly(Reference):
    """A typical port: PN-Act and the proxy moments, nothing else."""

    def forward(self, op, inputs, attrs):
        if op not in ("pn_act", "proxy_moments"):
            raise NotImplementedError(f"{op}: this port implements PN-Act only")
        return super().forward(op, inputs, attrs)


class AsksFirst(Reference):
    """Declines through supports(): float64 only."""

    def supports(self, op, attrs, dtype):
        return dtype == "float64"


class ForwardOnly(Reference):
    """No backward pass."""

    def vjp(self, op, inputs, attrs, cotangents):
        raise NotImplementedError("no backward pass yet")


class Nothing(Reference):
    """Supports no case at all."""

    def supports(self, op, attrs, dtype):
        return False


class Interrupted(Reference):
    """Ctrl-C pressed while pn_act runs (in-process runs only)."""

    def forward(self, op, inputs, attrs):
        if op == "pn_act":
            raise KeyboardInterrupt
        return super().forward(op, inputs, attrs)


class ScaledOutput(Reference):
    """group_norm's output off by 1e-4 relative: fails float32 tolerances (16 eps x condition)."""

    def forward(self, op, inputs, attrs):
        out = super().forward(op, inputs, attrs)
        if op == "group_norm":
            out = {k: (v * (1 + 1e-4)).astype(v.dtype) for k, v in out.items()}
        return out


class Mixed(ScaledOutput):
    """For the pytest plugin test: group_norm wrong, proxy_moments declined, pn_act right."""

    def supports(self, op, attrs, dtype):
        return op != "proxy_moments"
