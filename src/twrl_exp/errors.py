"""The one exception type for user errors: a bad value or an incompatible combination."""


class ConfigError(ValueError):
    """A user error, reported as one sentence that names the bad value and what would be valid."""
