"""The one exception type for user errors: a bad value or an incompatible combination."""


class ConfigError(ValueError):
    """A user error, reported as one sentence that names the bad value and what would be valid."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss, parameter or return: the run stops and fails."""


class RecordingError(RuntimeError):
    """The run could not be recorded completely (the store, a checkpoint, a video)."""


class InfrastructureLost(RecordingError):
    """A service a sweep depends on (its Optuna storage, the Ray head) was lost for longer than
    the sweep waits for it: one sentence naming it and how to resume. The trials it interrupted
    are failed as ``infrastructure`` and do not count toward ``n_trials``."""


class JobLost(RuntimeError):
    """A sweep job that never finished for a reason outside it (its machine or worker process
    died): a launcher returns it as the job's error, and a sweep runs another trial instead of
    counting this one."""


def describe_space(space: object) -> str:
    """A short name for a Gymnasium space in messages: ``Box(3,)``, ``Discrete(2)``."""
    shape = getattr(space, "shape", None)
    n = getattr(space, "n", None)
    kind = type(space).__name__
    if kind == "Discrete":
        return f"Discrete({n})"
    if shape is not None:
        return f"{kind}{tuple(shape)}"
    return kind
