"""Every exception edge_mlla raises on purpose lives here.

All derive from :class:`EdgeMLLAError`, so ``except EdgeMLLAError`` catches any of
them; each also derives from the built-in it refines (``ValueError``, ``TypeError``,
``FileNotFoundError``, ...) so generic handlers keep working.
"""

from __future__ import annotations


class EdgeMLLAError(Exception):
    """Base class of all edge_mlla errors."""


class ConfigError(EdgeMLLAError, ValueError):
    """A value (argument, model scale, size, option) is not one we accept."""


class InputTypeError(EdgeMLLAError, TypeError):
    """An argument has the wrong type."""


class ShapeError(EdgeMLLAError, ValueError):
    """A tensor or array has the wrong shape, channel count or dtype."""


class ModelFileError(EdgeMLLAError, ValueError):
    """A model file is missing, corrupt, or not the kind of model expected."""


class MissingFileError(EdgeMLLAError, FileNotFoundError):
    """A file or folder the call needs does not exist."""


class BackendUnavailableError(EdgeMLLAError, RuntimeError):
    """The requested runtime backend cannot run on this machine (package or device missing)."""


class ExportError(EdgeMLLAError, RuntimeError):
    """Exporting or converting a model failed."""


class DatasetError(EdgeMLLAError, ValueError):
    """A dataset (data.yaml, image folder, calibration source) is missing or malformed."""


class OutputNotWritableError(EdgeMLLAError, PermissionError):
    """An output path cannot be written (not a folder, no permission, read-only file system)."""


class ImageReadError(EdgeMLLAError, ValueError):
    """A file exists but could not be decoded as an image."""


class SourceError(EdgeMLLAError, OSError):
    """A video source (camera, stream URL, video file) could not be opened or read."""


class ClosedError(EdgeMLLAError, RuntimeError):
    """A Detector or backend was used after ``close()``."""


class MissingDependencyError(EdgeMLLAError, ImportError):
    """An optional package a call needs is not installed (the message says which and how to install it)."""


class QuantizationError(EdgeMLLAError, RuntimeError):
    """INT8 quantization (NNCF or ONNX Runtime) failed, or its result does not load."""


class CalibrationWarning(UserWarning):
    """Calibration went on with less than asked (fewer images than the subset size, skipped files)."""


class ServeError(EdgeMLLAError, RuntimeError):
    """Serving failed: the HTTP port is taken, the Ray cluster cannot be reached, or the app did not deploy."""
