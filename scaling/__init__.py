"""Fit scaling laws: batched, multi-start, variable-projection fits with uncertainty.

>>> import numpy as np, scaling
>>> D = np.geomspace(1e2, 1e5, 12)
>>> round(float(scaling.fit("power", D, 2.0 * D ** -0.3).params["alpha"]), 6)
0.3
"""

from importlib.metadata import PackageNotFoundError, version

from . import forms
from ._compare import Holdout, compare, holdout
from ._fit import fit
from ._local import local_exponent
from ._plot import plot_fit
from ._profile import profile, profile_ci
from ._result import FitResult
from ._x64 import enable_x64
from ._xarray import fit_dataarray

try:
    __version__ = version("neural-scaling-theory")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "FitResult",
    "Holdout",
    "compare",
    "enable_x64",
    "fit",
    "fit_dataarray",
    "forms",
    "holdout",
    "local_exponent",
    "plot_fit",
    "profile",
    "profile_ci",
]
