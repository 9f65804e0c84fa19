"""fairpp: the Fair-PP method as a local-first terminal application."""

__version__ = "0.1.0"
