"""The package's own errors, at the bottom so every layer can raise them."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


class DownloadError(CheckpointError):
    """A weights file that could not be fetched or failed verification."""


class UnsafeCheckpointError(CheckpointError):
    """A readable checkpoint that needs types outside the safe allow-list."""


class ExportError(ValueError):
    """A model, or a part of it, that cannot be exported as asked."""
