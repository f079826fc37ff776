"""Every collective runs under a timeout: a watchdog thread that ends a hung rank.

Collective libraries hang when a peer is gone or skipped a call, and MPI has no timeout
of its own. The runner arms the watchdog around every phase that communicates
(`with dog.guard("alltoall 1048576 B, timed loop"):`). If a guard outlives its deadline,
the watchdog runs the `on_fire` callback (which prints one line and closes the results
file, whose records are already on disk) and ends the process with exit code 124.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

EXIT_TIMEOUT = 124


class Watchdog:
    """One per process; guards nest (the innermost names the phase)."""

    def __init__(
        self,
        timeout_s: float,
        rank: int,
        on_fire: Callable[[str], None] | None = None,
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        self.timeout_s = timeout_s
        self.rank = rank
        self._on_fire = on_fire
        self._exit = exit
        self._lock = threading.Condition()
        self._stack: list[tuple[str, float, float]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="epbench-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def guard(self, what: str, timeout_s: float | None = None) -> Iterator[None]:
        limit_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + limit_s
        with self._lock:
            self._stack.append((what, deadline, limit_s))
            self._lock.notify()
        try:
            yield
        finally:
            with self._lock:
                self._stack.pop()
                self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=1.0)

    def _watch(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._stack:
                    self._lock.wait()
                    continue
                what, deadline, limit_s = min(self._stack, key=lambda item: item[1])
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._lock.wait(timeout=remaining)
                    continue
                self._fire(what, limit_s)
                return

    def _fire(self, what: str, limit_s: float) -> None:
        message = (
            f"rank {self.rank}: {what} did not finish within {limit_s:g} s; "
            "a peer rank is hung, dead or skipped this call (raise -T if it is just slow)"
        )
        try:
            if self._on_fire is not None:
                self._on_fire(message)
            else:
                print(f"epbench: error: {message}", file=sys.stderr, flush=True)
        finally:
            self._exit(EXIT_TIMEOUT)
