"""pnref: the numerical reference for Proxy Normalization.

Layers, lowest first (nothing imports upwards):
math core in NumPy (norms, activations, proxy moments, PN-Act) -> Numba kernels ->
autograd primitives -> nn / training -> experiments, golden vectors and the CLI.
"""

from pnref._version import __version__

__all__ = ["__version__"]
