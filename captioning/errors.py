"""Errors a user can act on: the entry points print them as one paragraph, without a traceback."""


class CaptioningError(Exception):
    """Base class of every error whose message tells the user what is wrong and how to fix it."""


class DatasetNotFoundError(CaptioningError):
    """The dataset root or its annotation file is missing."""


class DatasetFormatError(CaptioningError):
    """The annotations cannot be read in the requested or detected layout."""


class EmptySplitError(CaptioningError):
    """Training would start without a single usable training image."""


class EncoderWeightsUnavailableError(CaptioningError):
    """The pre-trained encoder weights are neither cached nor downloadable."""


class CheckpointError(CaptioningError):
    """A checkpoint is missing, unreadable or does not fit the run."""


class ConfigError(CaptioningError):
    """A configuration value that cannot work."""


class FeatureCacheError(CaptioningError):
    """A feature cache that cannot be read."""


class DiskSpaceError(CaptioningError):
    """What a run would write does not fit in the free space of its disk."""
