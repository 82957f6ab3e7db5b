"""What every command does with the files a person asked for: check them first, never lose them.

Support layer, shared by the CLI, training and the experiments:

- `CommandError`: a mistake the person can fix (a bad path, a missing extra); the CLI prints
  it as one line ``pnref: error: <message>`` and exits with status 2, never a traceback.
- `check_output_file` / `check_output_dir`: validate an output path **before** any work
  starts, so that a long run never ends in "Is a directory".
- `write_atomic`: write a file through a temporary file in the same folder and a rename, so
  a reader never sees half a file; if writing fails anyway, the content is saved to a
  temporary file and the error says where.
- `require_extra`: one line naming the missing optional package and the install command.
- `strict_json`: replace NaN and infinities by ``None`` so the output is strict JSON
  (``json.dumps(..., allow_nan=False)`` accepts it; ``JSON.parse`` too).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "CommandError",
    "check_output_file",
    "check_output_dir",
    "write_atomic",
    "require_extra",
    "strict_json",
    "dumps_strict_json",
]


class CommandError(Exception):
    """An error the person at the command line can fix; printed as one line, exit status 2."""


def _check_writable_dir(folder: Path, option: str, path: Path) -> None:
    """Create ``folder`` if needed and prove a file can be created in it."""
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"{option} {path}: {folder} is not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".pnref-probe-", delete=True)
        probe.close()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CommandError(f"{option} {path}: cannot write in {folder}: {reason}") from None


def check_output_file(path: str | os.PathLike[str], *, option: str) -> Path:
    """Check, before any work, that ``path`` can be written as a file; return it as a Path.

    Parameters
    ----------
    path : path-like
        The output file the person named.
    option : str
        The command-line option it came from (``"--output"``), used in the message.

    Raises
    ------
    CommandError
        If ``path`` is an existing directory, or its folder cannot be created or written.
        A missing parent folder is created.
    """
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{option} {path}: is a directory, not a file")
    if path.exists() and not path.is_file():
        raise CommandError(f"{option} {path}: exists and is not a regular file")
    _check_writable_dir(path.parent if str(path.parent) else Path("."), option, path)
    return path


def check_output_dir(path: str | os.PathLike[str], *, option: str) -> Path:
    """Check, before any work, that ``path`` is (or can be created as) a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option} {path}: is a file, not a directory")
    _check_writable_dir(path, option, path)
    return path


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A reader sees either the old file or the whole new one. If the write fails (disk full,
    the folder removed during the run), ``data`` is written to a fresh temporary file instead
    and a `CommandError` names both the failure and where the data went, so nothing computed
    is lost.
    """
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
        os.chmod(tmp_name, _file_mode(path))  # mkstemp makes 0600 whatever the umask
        os.replace(tmp_name, path)
        return path
    except OSError as exc:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
        fd, rescue = tempfile.mkstemp(prefix="pnref-rescued-", suffix=path.suffix)
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
        reason = exc.strerror or str(exc)
        raise CommandError(
            f"could not write {path}: {reason}; the results were saved to {rescue}"
        ) from None


def _file_mode(path: Path) -> int:
    """The permission bits ``path`` keeps (if it exists) or gets from the umask (if new)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def require_extra(package: str, extra: str, command: str, *, module: str | None = None) -> None:
    """Raise `CommandError` unless ``package`` can be imported; call it before any work.

    Parameters
    ----------
    package : str
        The distribution a person installs (``"scikit-learn"``), named in the message.
    extra : str
        The pnref extra that brings it (``"data"``).
    command : str
        The command that needs it (``"pnref train --dataset digits"``).
    module : str, optional
        The name it is imported by when that differs from ``package`` (``"sklearn"``).

    The message is ``<command> needs <package>: pip install 'pnref[<extra>]'``.
    """
    try:
        found = importlib.util.find_spec(module or package) is not None
    except (ImportError, ValueError):  # a broken install or a module set to None in sys.modules
        found = False
    if not found:
        raise CommandError(f"{command} needs {package}: pip install 'pnref[{extra}]'")


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by ``None``, recursively.

    Callers that can produce non-finite numbers add a field saying why a value is null
    (for example ``"diverged": true``).
    """
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # NumPy scalars
        return strict_json(value.item())
    return value


def dumps_strict_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of `strict_json` (value), refusing anything that is not strict JSON."""
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)
