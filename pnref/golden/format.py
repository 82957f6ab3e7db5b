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
    "DIGEST_ALGORITHM",
    "digest_fields",
    "seal_manifest",
    "check_digest",
]

#: Version of the manifest schema; bumped on any incompatible change (2: the digest).
SCHEMA_VERSION = 2
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


def read_manifest(directory: str | Path, *, check: bool = True) -> dict[str, Any]:
    """Read and check the manifest of a suite directory.

    Parameters
    ----------
    directory : str or Path
        The suite directory.
    check : bool
        Also verify the manifest's digest (`check_digest`). Only tools that rewrite a
        manifest on purpose (and seal it again) read it unchecked.

    Raises
    ------
    SuiteFormatError
        If the directory is missing or a file, the manifest is missing, not JSON, of another
        format or schema version, has no case list, or (``check``) its digest is missing or
        does not match its contents.
    """
    directory = Path(directory)
    if directory.is_file():
        raise SuiteFormatError(f"{directory} is a file, not a suite directory (a directory "
                               f"holding {MANIFEST_NAME} and the case files)")
    if not directory.exists():
        raise SuiteFormatError(f"suite directory {directory} does not exist")
    path = directory / MANIFEST_NAME
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
    if check:
        check_digest(manifest, path)
    return manifest


# --------------------------------------------------------------------------- the digest

#: Hash function of the manifest digest.
DIGEST_ALGORITHM = "sha256"
#: Manifest keys outside the digest: the digest itself, and the provenance (versions and
#: platform of the generator), which decides no verdict.
_UNDIGESTED = ("digest", "provenance")
#: Case fields digested one entry at a time, so that a change names the array.
_PER_NAME = ("arrays", "tolerances")


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def digest_fields(manifest: dict[str, Any]) -> dict[str, str]:
    """One hash per field of the manifest that decides a verdict, keyed by the field's path.

    Covered: every top-level key but ``digest`` and ``provenance`` (format, schema
    version, suite name, profiles, tolerance policy), the list of case ids in order
    (``cases``), and every field of every case (``cases[<id>].<field>``), where ``arrays``
    and ``tolerances`` get one hash per array (``cases[<id>].tolerances.expected.y``, the
    array's checksum, dtype and shape; the tolerance's kind, metric, rtol, atol and reason)
    plus one for the set of names. Each hash is the SHA-256 of the field's canonical JSON
    (sorted keys, no spaces), its first 16 hex digits.
    """
    fields: dict[str, str] = {}
    for key in sorted(k for k in manifest if k not in _UNDIGESTED and k != "cases"):
        fields[key] = _hash(manifest[key])[:16]
    cases = manifest.get("cases")
    cases = cases if isinstance(cases, list) else []
    fields["cases"] = _hash([c.get("id") if isinstance(c, dict) else c for c in cases])[:16]
    for index, case in enumerate(cases):
        if not isinstance(case, dict):
            fields[f"cases[{index}]"] = _hash(case)[:16]
            continue
        label = f"cases[{case.get('id', index)}]"
        for key in sorted(case):
            value = case[key]
            if key in _PER_NAME and isinstance(value, dict):
                fields[f"{label}.{key}"] = _hash(sorted(value))[:16]
                for name in sorted(value):
                    fields[f"{label}.{key}.{name}"] = _hash(value[name])[:16]
            else:
                fields[f"{label}.{key}"] = _hash(value)[:16]
    return fields


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Set ``manifest["digest"]`` from its current contents; return the manifest.

    The digest is ``{"algorithm": "sha256", "fields": digest_fields(manifest), "sha256":
    <SHA-256 of the fields' canonical JSON>}``. `pnref golden generate` seals every suite
    it writes; a tool that derives a suite from another (a subset, say) seals the result.
    """
    fields = digest_fields(manifest)
    manifest["digest"] = {"algorithm": DIGEST_ALGORITHM, "fields": fields,
                          "sha256": _hash(fields)}
    return manifest


def check_digest(manifest: dict[str, Any], where: str | Path = MANIFEST_NAME) -> str:
    """Recompute the digest of ``manifest``; return its SHA-256 if it matches.

    Raises
    ------
    SuiteFormatError
        If the manifest has no digest, or a covered field differs from what the digest
        covers (the message names the first such field, in the order of `digest_fields`).
    """
    digest = manifest.get("digest")
    if not (isinstance(digest, dict) and isinstance(digest.get("fields"), dict)
            and digest.get("algorithm") == DIGEST_ALGORITHM):
        raise SuiteFormatError(f"{where} has no {DIGEST_ALGORITHM} digest, so an edit could not "
                               "be detected; regenerate the suite with pnref golden generate")
    stored = digest["fields"]
    fresh = digest_fields(manifest)
    for name in [*fresh, *(k for k in stored if k not in fresh)]:
        if stored.get(name) != fresh.get(name):
            what = ("is not covered by the digest (added)" if name not in stored else
                    "is covered by the digest but absent (removed)" if name not in fresh else
                    "differs from what the digest covers")
            raise SuiteFormatError(f"{where} was edited after generation: field {name} {what}; "
                                   "use the suite as generated, or state other tolerances "
                                   "explicitly (docs/verification.md, Custom tolerances)")
    total = _hash(stored)
    if digest.get("sha256") != total:
        raise SuiteFormatError(f"{where} was edited after generation: its digest's sha256 does "
                               "not match the digest's fields")
    return total
