"""Calling an adapter: in a worker process with a per-call timeout, or in this process.

A Python thread cannot be stopped, so a runaway adapter is run in a separate process: the
worker (a fresh interpreter, ``python -m pnref.verification.worker``, safe with the threads
of Numba, BLAS and PyTorch and independent of the caller's main script) loads the adapter
once, then answers one request per call over a pair of pipes (pickled messages; the worker's
stdout and stderr stay the adapter's). The parent waits for each answer at
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

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from pnref.verification.adapter import AdapterLoadError, describe_exception, load_adapter

__all__ = ["Outcome", "NotAnArray", "WorkerRunner", "InProcessRunner", "call_adapter",
           "DEFAULT_TIMEOUT"]

#: Default limit on one adapter call, in seconds. Once an adapter is loaded, an honest call
#: on the bundled suite takes milliseconds; the slowest is the default adapter's first call
#: of a fast-path kernel whose Numba cache is cold (a compilation: tens of seconds on a busy
#: machine). The limit is far above that and still ends a hang within minutes.
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


def _worker_main(requests: Connection, answers: Connection, spec: str) -> None:  # pragma: no cover
    """The worker's loop: load ``spec``, then answer ``(method, args)`` requests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        adapter = load_adapter(spec)
    except AdapterLoadError as exc:
        answers.send(("error", str(exc)))
        return
    answers.send(("loaded", _adapter_info(adapter)))
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        method, args = request
        outcome = call_adapter(adapter, method, args)
        try:
            answers.send(outcome)
        except Exception as exc:  # noqa: BLE001 - a value pickle cannot send
            answers.send(Outcome("raised", message=f"adapter {method}() returned a value that "
                                 f"cannot be sent back from the worker: "
                                 f"{describe_exception(exc)}"))


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
        if os.name != "posix":
            raise ValueError("the adapter's worker process needs a POSIX system (it passes pipe "
                             "descriptors); run the adapter in this process with --timeout 0")
        self.spec, self.timeout = spec, float(timeout)
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._answers: Connection | None = None
        self.info: dict[str, Any] = {}
        self.restarts = 0

    def start(self) -> dict[str, Any]:
        """Start the worker and load the adapter; return its ``name`` and ``supports`` flag.

        Raises
        ------
        AdapterLoadError
            If loading fails, the worker dies, or loading takes longer than the timeout.
        """
        if self._process is not None:  # already running
            return self.info
        to_worker_read, to_worker_write = os.pipe()
        from_worker_read, from_worker_write = os.pipe()
        env = dict(os.environ, PNREF_WORKER_SYS_PATH=json.dumps(sys.path))
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "pnref.verification.worker", str(to_worker_read),
                 str(from_worker_write), self.spec],
                pass_fds=(to_worker_read, from_worker_write), stdin=subprocess.DEVNULL, env=env)
        finally:
            os.close(to_worker_read)
            os.close(from_worker_write)
        self._process = process
        self._conn = Connection(to_worker_write, readable=False)
        self._answers = Connection(from_worker_read, writable=False)
        limit = max(self.timeout, LOAD_TIMEOUT)
        try:
            if not self._answers.poll(limit):
                self._kill()
                raise AdapterLoadError(f"loading --impl {self.spec} took longer than "
                                       f"{limit:g} s")
            kind, payload = self._answers.recv()
        except (EOFError, OSError):
            code = process.wait()
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
            if not self._answers.poll(self.timeout):
                self._kill()
                return Outcome("timeout", message=f"timed out after {self.timeout:g} s")
            return self._answers.recv()
        except (EOFError, OSError):
            try:
                code = self._process.wait(5.0)
            except subprocess.TimeoutExpired:
                code = None
            self._kill()
            return Outcome("died", message=f"adapter {method}() ended the worker process "
                           f"(exit code {code}): a crash or os._exit")

    def _kill(self) -> None:
        process = self._process
        for conn in (self._conn, self._answers):
            if conn is not None:
                conn.close()
        self._process = self._conn = self._answers = None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stop the worker (politely if it is idle)."""
        if self._conn is not None and self._process is not None:
            try:
                self._conn.send(None)
                self._process.wait(2.0)
            except (OSError, subprocess.TimeoutExpired):
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


def _main(argv: list[str]) -> None:  # pragma: no cover - the worker's entry point
    """``python -m pnref.verification.worker REQUESTS_FD ANSWERS_FD SPEC``."""
    for entry in reversed(json.loads(os.environ.get("PNREF_WORKER_SYS_PATH", "[]"))):
        if entry not in sys.path:  # the caller's path, so the adapter imports as it would there
            sys.path.insert(1, entry)
    # run the loop of the imported module, not of __main__: the outcomes it pickles must be
    # pnref.verification.worker.Outcome for the caller to unpickle them
    from pnref.verification import worker

    requests = Connection(int(argv[0]), writable=False)
    answers = Connection(int(argv[1]), readable=False)
    worker._worker_main(requests, answers, argv[2])


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1:])
