"""The error of a config that cannot run, in a module of its own: config.py (which builds its
defaults from the model families) and the families (which raise it) both import it."""


class ConfigError(ValueError):
    """A config that cannot run; the message says which key and why."""
