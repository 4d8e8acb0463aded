"""`ConfigError`: a config that cannot run. Its own module so that the model families and the
data package can raise it without importing config.py (which imports their defaults)."""


class ConfigError(ValueError):
    """A config that cannot run; the message says which key and why."""
