"""Optuna storage calls that survive a database restart.

A PostgreSQL restart (or a network blip) makes every call on an RDB storage fail until the
database answers again: an ``OperationalError``, wrapped by Optuna in ``StorageInternalError``.
Without help, the sweep died with a traceback and the trial in flight was told FAIL with that
error, *counted* toward ``n_trials``. :class:`RetryingStorage` wraps the storage a study and its
jobs use: a call that fails because the database cannot be reached is retried with backoff for
``window_s`` seconds (``hydra.sweeper.storage_retry_s``; jobs read it from the study), then
raises :class:`StorageUnavailable`, one sentence. Any other error is raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat

from twrl_exp import store
from twrl_exp.errors import InfrastructureLost

log = logging.getLogger(__name__)
DEFAULT_WINDOW_S = 60.0
WINDOW_ATTR = "storage_retry_s"  # the study's user attribute that tells its jobs the window
_FIRST_DELAY_S, _MAX_DELAY_S = 0.5, 5.0


class StorageUnavailable(InfrastructureLost):
    """The Optuna storage could not be reached for the whole retry window."""

    resume = (
        "run the same command again once the database answers "
        "(hydra.sweeper.storage_retry_s sets how long a sweep waits for it)"
    )

    def __init__(self, url: str, window_s: float, reason: str) -> None:
        self.url, self.window_s, self.reason = store.redact(url), window_s, reason
        self.what = f"The Optuna storage {self.url} did not answer for {window_s:g} s ({reason})"
        super().__init__(f"{self.what}; {self.resume}.")

    def __reduce__(self) -> tuple[Any, ...]:  # a job's error travels back to its sweep
        return type(self), (self.url, self.window_s, self.reason)


def unreachable(exc: BaseException, sqlite: bool = False) -> bool:
    """Whether ``exc`` says the database could not be reached (retrying may help), rather than
    that the call itself was wrong. SQLite's only such case is a locked database."""
    import sqlalchemy.exc as sa

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sa.OperationalError | sa.InterfaceError):
            return not sqlite or "locked" in str(seen)
        if isinstance(seen, sa.TimeoutError):  # no pooled connection came back in time
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry(call: Callable[[], Any], url: str, window_s: float, what: str = "") -> Any:
    """``call()``, retried with backoff while the database cannot be reached, for at most
    ``window_s`` seconds; then :class:`StorageUnavailable`."""
    sqlite = url.startswith("sqlite")
    deadline: float | None = None
    delay = _FIRST_DELAY_S
    while True:
        try:
            result = call()
        except Exception as exc:
            if not unreachable(exc, sqlite):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + window_s
                if window_s > 0:
                    log.warning(
                        f"The Optuna storage {store.redact(url)} does not answer "
                        f"({store.connection_reason(exc)}); retrying{what} for up to "
                        f"{window_s:g} s."
                    )
            if now >= deadline:
                raise StorageUnavailable(url, window_s, store.connection_reason(exc)) from exc
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, _MAX_DELAY_S)
            continue
        if deadline is not None and window_s > 0:
            log.warning(f"The Optuna storage {store.redact(url)} answers again.")
        return result


class RetryingStorage:
    """An Optuna storage whose calls are retried while its database cannot be reached.

    A stand-in for the storage it wraps (registered as a :class:`BaseStorage` and, like an RDB
    storage, a :class:`BaseHeartbeat`), so studies and trials use it as they would the original.
    ``window_s`` may be changed at any time (a job learns its sweep's window from the study).
    """

    def __init__(self, backend: BaseStorage, url: str, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.backend, self.url, self.window_s = backend, url, window_s

    def __getattr__(self, name: str) -> Any:
        if name in ("backend", "url", "window_s"):  # not set yet (unpickling)
            raise AttributeError(name)
        attr = getattr(self.backend, name)
        if name.startswith("__") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            attempts = 0

            def once() -> Any:
                nonlocal attempts
                attempts += 1
                try:
                    return attr(*args, **kwargs)
                except UpdateFinishedTrialError:
                    # The attempt that lost its connection had committed the trial's end.
                    if attempts > 1 and name == "set_trial_state_values":
                        return True
                    raise

            return retry(once, self.url, self.window_s)

        call.__name__ = name
        return call

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


BaseStorage.register(RetryingStorage)
BaseHeartbeat.register(RetryingStorage)
