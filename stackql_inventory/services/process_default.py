"""One instance of a service per process, built on first use and forgotten on reset (engine, catalog, result store)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessDefault(Generic[T]):
    """The process-wide instance made by `build()`: built once on first use (thread-safe), forgotten by reset()."""

    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The instance, built now if there is none yet."""
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def reset(self) -> T | None:
        """Forget the instance (after a settings change, and in tests); returns it, if any, for closing."""
        with self._lock:
            value, self._value = self._value, None
        return value
