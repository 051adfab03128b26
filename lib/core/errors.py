"""Exception types whose messages are meant to be read by the user as they stand."""


class ReportError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits non-zero."""


class DataVerificationError(ReportError):
    """A file's content does not match the hash recorded for the official release."""


class DownloadError(ReportError):
    """A file could not be fetched and no mirror provided it."""


class ConfigError(ReportError):
    """Invalid options, or a cache/checkpoint made with different options."""
