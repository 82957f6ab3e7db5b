"""Other implementations of pnref's ops, verified by ``pnref golden verify``.

- `pnref.adapters.torch` (extra ``pnref[torch]``): PyTorch, with torch autograd.

Import the submodule explicitly; this package imports nothing optional by itself.
"""

__all__: list[str] = []
