"""Fit scaling laws: batched, multi-start, variable-projection fits with uncertainty."""

from importlib.metadata import PackageNotFoundError, version

from . import forms
from ._fit import fit
from ._result import FitResult

try:
    __version__ = version("neural-scaling-theory")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "FitResult",
    "fit",
    "forms",
]
