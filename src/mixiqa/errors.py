"""Errors a user can act on. Each message names the thing at fault and what to do."""


class MixiqaError(Exception):
    """Base class of every error mixiqa raises for bad input."""


class DataError(MixiqaError, ValueError):
    """A dataset, score file, image or split file is missing, malformed or inconsistent."""


class ConfigError(MixiqaError, ValueError):
    """A configuration value or a name (dataset, backbone, mapper...) is not valid."""
