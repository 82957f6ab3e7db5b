"""pnref's own mutant adapters: ports that each make one catalogued mistake.

Each class here is a golden adapter (``pnref golden verify --impl
pnref.adapters.mutants:EpsOutsideSqrt``) that answers every op as pnref's reference does,
except that it makes one mistake of `pnref.golden.deviations` (its first variant, or the
one named by ``variant``) wherever that mistake applies. Its answers are computed by
`pnref.golden.deviations.deviant_outputs` and returned in the case's dtype, like any
implementation's. They are what ``docs/verification.md`` diagnoses, and what the diagnosis
tests throw at `pnref.golden.diagnosis.diagnose`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pnref.golden.deviations import DEVIATIONS, Variant, applicable, deviant_outputs
from pnref.golden.ops import OPS

__all__ = ["MutantAdapter", "MUTANTS"]


class MutantAdapter:
    """A port with one mistake: the deviation ``deviation_id`` (variant index ``variant``).

    Parameters
    ----------
    deviation_id : str
        A key of `pnref.golden.deviations.DEVIATIONS`.
    variant : int
        Index of the variant among the deviation's variants.
    """

    deviation_id = ""
    variant_index = 0

    def __init__(self, deviation_id: str | None = None, variant: int | None = None) -> None:
        if deviation_id is not None:
            self.deviation_id = deviation_id
        if variant is not None:
            self.variant_index = variant
        if self.deviation_id not in DEVIATIONS:
            raise ValueError(f"deviation_id must be one of {sorted(DEVIATIONS)}, got "
                             f"{self.deviation_id!r}")
        self.deviation = DEVIATIONS[self.deviation_id]
        self.name = f"pnref.adapters.mutants:{type(self).__name__} ({self.deviation_id})"

    def _variant(self, op: str) -> Variant | None:
        chosen = self.deviation.variants[self.variant_index]
        return chosen if chosen in applicable(self.deviation, op) else None

    def _outputs(self, op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
                 cotangents: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        variant = self._variant(op)
        outputs = None
        if variant is not None:
            outputs = deviant_outputs(op, inputs, attrs, cotangents, variant)
        if outputs is None:  # the mistake does not apply here: answer as the reference
            spec = OPS[op]
            outputs = {f"expected.{k}": v for k, v in spec.forward(inputs, attrs).items()}
            if cotangents:
                outputs.update({f"expected_grad.{k}": v
                                for k, v in spec.vjp(inputs, attrs, cotangents).items()})
        return outputs

    def forward(self, op: str, inputs: Mapping[str, np.ndarray],
                attrs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs of ``op`` with the mistake, in the inputs' dtype."""
        dtype = np.result_type(*inputs.values())
        outputs = self._outputs(op, inputs, attrs, None)
        with np.errstate(all="ignore"):
            return {k.split(".", 1)[1]: np.asarray(v).astype(dtype)
                    for k, v in outputs.items() if k.startswith("expected.")}

    def vjp(self, op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
            cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gradients with the mistake, in the inputs' dtype."""
        dtype = np.result_type(*inputs.values())
        outputs = self._outputs(op, inputs, attrs, cotangents)
        with np.errstate(all="ignore"):
            return {k.split(".", 1)[1]: np.asarray(v).astype(dtype)
                    for k, v in outputs.items() if k.startswith("expected_grad.")}


def _mutant(class_name: str, deviation_id: str) -> type[MutantAdapter]:
    doc = f"A port whose one mistake is ``{deviation_id}``: {DEVIATIONS[deviation_id].description}."
    return type(class_name, (MutantAdapter,), {"deviation_id": deviation_id, "__doc__": doc,
                                               "__module__": __name__})


#: Class name -> deviation id of every mutant (one per catalogue entry).
MUTANTS: dict[str, str] = {
    "".join(part.capitalize() for part in deviation_id.split("-")): deviation_id
    for deviation_id in DEVIATIONS
}

for _name, _deviation_id in MUTANTS.items():
    globals()[_name] = _mutant(_name, _deviation_id)
__all__ += sorted(MUTANTS)
