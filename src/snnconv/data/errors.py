"""Errors raised by the dataset loaders (both are :class:`snnconv.errors.SnnconvError`)."""

from __future__ import annotations

from snnconv.errors import SnnconvError


class DatasetNotFoundError(SnnconvError, FileNotFoundError):
    """The dataset's files are not where we looked; the message says what to install or put where."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetFormatError(SnnconvError):
    """A dataset file exists but is truncated or malformed; the message names the file and the problem."""
