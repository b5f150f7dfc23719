"""The one error type a user should see: a bad setting, reported in one line before any work starts."""


class ConfigError(ValueError):
    """A setting is wrong; the message names it (e.g. "data.n=0: must be positive")."""
