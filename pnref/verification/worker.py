"""Calling an adapter: in a worker process with a per-call timeout, or in this process.

A Python thread cannot be stopped, so a runaway adapter is run in a separate process: the
worker (a ``spawn``-started child, safe with the threads of Numba, BLAS and PyTorch) loads
the adapter once, then answers one request per call. The parent waits for each answer at
most ``timeout`` seconds; past that it kills the worker (SIGTERM, then SIGKILL), reports the
call as timed out, and starts a fresh worker for the next call. A worker that dies (a
crash, ``os._exit``) fails the call in progress and is restarted the same way. The worker
ignores SIGINT: Ctrl-C reaches the parent, which stops the worker and the run.

`InProcessRunner` is the same interface without a process (no timeout): for adapter
objects built in Python, and for ``--timeout 0`` (a debugger sees the adapter's frames).

Every call returns an `Outcome`: ``ok`` (with the value), ``unsupported`` (the adapter
raised ``NotImplementedError``; the reason is its message), ``raised`` (any other exception,
``SystemExit`` included), ``timeout`` or ``died``.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pnref.verification.adapter import AdapterLoadError, describe_exception, load_adapter

__all__ = ["Outcome", "NotAnArray", "WorkerRunner", "InProcessRunner", "call_adapter",
           "DEFAULT_TIMEOUT"]

#: Default limit on one adapter call, in seconds. The slowest honest call on the bundled
#: suite (the torch adapter on a cold start, or a first Numba compilation of the fast path)
#: takes a few seconds; the limit is far above that and still ends a hang within minutes.
DEFAULT_TIMEOUT = 300.0
#: Least time allowed for starting a worker and loading the adapter (importing a framework
#: such as PyTorch takes seconds), whatever the per-call timeout.
LOAD_TIMEOUT = 120.0


@dataclass
class Outcome:
    """The result of one adapter call.

    Attributes
    ----------
    status : str
        ``"ok"``, ``"unsupported"``, ``"raised"``, ``"timeout"`` or ``"died"``.
    value : Any
        The returned value (``ok``).
    message : str
        The reason (``unsupported``) or what went wrong.
    """

    status: str
    value: Any = None
    message: str = ""


@dataclass
class NotAnArray:
    """Stands in for a returned value NumPy could not convert (so the worker can send it)."""

    message: str


def _plain(value: Any) -> Any:
    """A returned mapping with NumPy arrays (picklable whatever the adapter's array type)."""
    import numpy as np

    if not isinstance(value, Mapping):
        return value
    plain = {}
    for key, item in value.items():
        if item is None or isinstance(item, np.ndarray):
            plain[key] = item
            continue
        try:
            plain[key] = np.asarray(item)
        except Exception as exc:  # noqa: BLE001 - whatever the foreign object raises
            plain[key] = NotAnArray(f"{type(exc).__name__}: {exc}")
    return plain


def call_adapter(adapter: Any, method: str, args: tuple) -> Outcome:
    """Call ``adapter.<method>(*args)``; every way it can end becomes an `Outcome`."""
    try:
        value = getattr(adapter, method)(*args)
    except NotImplementedError as exc:
        return Outcome("unsupported", message=str(exc) or f"{method}() raised NotImplementedError")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit of an adapter is a failed call
        return Outcome("raised", message=f"adapter {method}() raised {describe_exception(exc)}")
    return Outcome("ok", _plain(value))


def _adapter_info(adapter: Any) -> dict[str, Any]:
    return {"name": str(getattr(adapter, "name", type(adapter).__name__)),
            "supports": callable(getattr(adapter, "supports", None))}


def _worker_main(conn, spec: str) -> None:  # pragma: no cover - runs in the child
    """The worker's loop: load ``spec``, then answer ``(method, args)`` requests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        adapter = load_adapter(spec)
    except AdapterLoadError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("loaded", _adapter_info(adapter)))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        method, args = request
        outcome = call_adapter(adapter, method, args)
        try:
            conn.send(outcome)
        except Exception as exc:  # noqa: BLE001 - a value pickle cannot send
            conn.send(Outcome("raised", message=f"adapter {method}() returned a value that "
                              f"cannot be sent back from the worker: {describe_exception(exc)}"))


class WorkerRunner:
    """Runs the adapter ``spec`` in a worker process; each call limited to ``timeout`` s.

    Parameters
    ----------
    spec : str
        ``MODULE:OBJECT`` or ``path/to/file.py:OBJECT`` (see `load_adapter`).
    timeout : float
        Seconds allowed for each call. Starting the worker and loading the adapter may take
        ``max(timeout, LOAD_TIMEOUT)``.
    """

    def __init__(self, spec: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.spec, self.timeout = spec, float(timeout)
        self._context = multiprocessing.get_context("spawn")
        self._process = None
        self._conn = None
        self.info: dict[str, Any] = {}
        self.restarts = 0

    def start(self) -> dict[str, Any]:
        """Start the worker and load the adapter; return its ``name`` and ``supports`` flag.

        Raises
        ------
        AdapterLoadError
            If loading fails, the worker dies, or loading takes longer than the timeout.
        """
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self.spec),
                                        name="pnref-adapter-worker", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        limit = max(self.timeout, LOAD_TIMEOUT)
        try:
            if not parent.poll(limit):
                self._kill()
                raise AdapterLoadError(f"loading --impl {self.spec} took longer than "
                                       f"{limit:g} s")
            kind, payload = parent.recv()
        except (EOFError, OSError):
            code = process.exitcode
            self._kill()
            raise AdapterLoadError(f"the worker process loading --impl {self.spec} died "
                                   f"(exit code {code})") from None
        if kind == "error":
            self._kill()
            raise AdapterLoadError(payload)
        self.info = payload
        return payload

    def call(self, method: str, *args: Any) -> Outcome:
        """Run ``adapter.<method>(*args)`` in the worker (restarted first if needed)."""
        if self._process is None:
            self.restarts += 1
            self.start()
        try:
            self._conn.send((method, args))
            if not self._conn.poll(self.timeout):
                self._kill()
                return Outcome("timeout", message=f"timed out after {self.timeout:g} s")
            return self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._process.join(1.0)
            code = self._process.exitcode
            self._kill()
            return Outcome("died", message=f"adapter {method}() ended the worker process "
                           f"(exit code {code}): a crash or os._exit")

    def _kill(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None and process.is_alive():
            process.terminate()
            process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join(2.0)

    def close(self) -> None:
        """Stop the worker (politely if it is idle)."""
        if self._conn is not None and self._process is not None:
            try:
                self._conn.send(None)
                self._process.join(2.0)
            except (OSError, BrokenPipeError):
                pass
        self._kill()


class InProcessRunner:
    """Calls an adapter object directly (same interface as `WorkerRunner`, no timeout)."""

    timeout = None
    restarts = 0

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.info = _adapter_info(adapter)

    def start(self) -> dict[str, Any]:
        """The adapter's ``name`` and ``supports`` flag."""
        return self.info

    def call(self, method: str, *args: Any) -> Outcome:
        """Run ``adapter.<method>(*args)`` here."""
        return call_adapter(self.adapter, method, args)

    def close(self) -> None:
        """Nothing to stop."""
