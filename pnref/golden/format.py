"""On-disk format of a golden suite: one ``.npz`` per case and a JSON manifest.

The format is specified in ``docs/golden-format.md``; this module is its only reader and
writer. Case files hold plain arrays only and are always read with ``allow_pickle=False``.
Case files are written byte-for-byte reproducibly (fixed zip timestamps, stored entries in
sorted order), so regenerating a suite on one platform gives identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "FORMAT_NAME",
    "SuiteFormatError",
    "array_sha256",
    "write_case_file",
    "read_case_file",
    "write_manifest",
    "read_manifest",
]

#: Version of the manifest schema; bumped on any incompatible change.
SCHEMA_VERSION = 1
#: Name of the manifest inside a suite directory.
MANIFEST_NAME = "manifest.json"
#: Value of the manifest's ``format`` field.
FORMAT_NAME = "pnref-golden"

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class SuiteFormatError(ValueError):
    """A suite directory, manifest or case file does not follow the golden format."""


def _little_endian(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def array_sha256(a: np.ndarray) -> str:
    """SHA-256 (hex) of an array's values: its C-order, little-endian bytes.

    Shape and dtype are not part of the digest; the manifest records and checks them
    separately.
    """
    return hashlib.sha256(_little_endian(np.asarray(a)).tobytes()).hexdigest()


def write_case_file(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` file that ``numpy.load`` reads, reproducibly.

    Parameters
    ----------
    path : str or Path
        Destination file.
    arrays : dict of str to ndarray
        Plain numeric arrays (no object dtype); keys become the entry names.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            value = _little_endian(np.asarray(arrays[key]))
            if value.dtype.hasobject:
                raise TypeError(f"array {key!r} has an object dtype; golden files hold numbers")
            payload = io.BytesIO()
            np.lib.format.write_array(payload, value, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, payload.getvalue())
    Path(path).write_bytes(buffer.getvalue())


def read_case_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of a case file (``allow_pickle=False``).

    Raises
    ------
    SuiteFormatError
        If the file is missing, not a valid ``.npz`` or holds a non-plain array.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.array(data[key]) for key in data.files}
    except FileNotFoundError as exc:
        raise SuiteFormatError(f"case file {path.name} is missing") from exc
    except Exception as exc:  # zlib, zipfile, format and value errors alike: unreadable
        raise SuiteFormatError(
            f"case file {path.name} cannot be read as a plain .npz: {type(exc).__name__}: {exc}"
        ) from exc


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest as sorted, indented JSON; return its path."""
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return path


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read and check the manifest of a suite directory.

    Raises
    ------
    SuiteFormatError
        If the manifest is missing, not JSON, of another format or schema version, or has
        no case list.
    """
    path = Path(directory) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SuiteFormatError(f"no {MANIFEST_NAME} in suite directory {directory}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SuiteFormatError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise SuiteFormatError(f"{path} is not a {FORMAT_NAME} manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise SuiteFormatError(
            f"{path} has schema_version {manifest.get('schema_version')!r}; this pnref reads "
            f"version {SCHEMA_VERSION}"
        )
    if not isinstance(manifest.get("cases"), list):
        raise SuiteFormatError(f"{path} has no 'cases' list")
    return manifest
