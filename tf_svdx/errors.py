"""The error types users see. Each message is one line naming the file (and line) and the problem."""


class SvdxError(Exception):
    """Base class of every error tf_svdx raises on bad input."""


class AudioError(SvdxError):
    """An audio file cannot be used: missing, unreadable, corrupt, empty or not audio."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LabelError(SvdxError):
    """A .lab file (or a manifest/filelist line) is malformed. `line` is 1-based, or None."""

    def __init__(self, path, line, reason):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class CorpusError(SvdxError):
    """A corpus as a whole is unusable (missing layout, nothing left after skipping bad files)."""


class ConfigError(SvdxError):
    """A config file or override is invalid (unknown key, wrong type)."""


class MissingDependencyError(SvdxError):
    """A program, package or data file the job needs is not installed; says what to install."""
