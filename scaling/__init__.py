"""Fit scaling laws: batched, multi-start, variable-projection fits with uncertainty.

>>> import numpy as np, scaling
>>> D = np.geomspace(1e2, 1e5, 12)
>>> round(float(scaling.fit("power", D, 2.0 * D ** -0.3).params["alpha"]), 6)
0.3

``import scaling`` loads numpy only: jax, scipy, xarray, pandas and matplotlib are
imported when a function that needs them is first used (PEP 562 module ``__getattr__``).
The ``.scaling`` xarray accessor is registered as soon as xarray is imported, before or
after this package (see :mod:`scaling._accessor_hook`).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from . import _accessor_hook, forms
from ._x64 import enable_x64

try:
    __version__ = version("neural-scaling-theory")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

# public name -> private module that defines it (loaded on first access)
_LAZY = {
    "FitResult": "_result",
    "GroupedFit": "_shared",
    "Holdout": "_compare",
    "compare": "_compare",
    "compute_optimal": "_optimal",
    "ensure_compilation_cache": "_cache",
    "fit": "_fit",
    "fit_dataarray": "_xarray",
    "holdout": "_compare",
    "local_exponent": "_local",
    "lr_test": "_shared",
    "plot_compute_optimal": "_plot",
    "plot_fit": "_plot",
    "profile": "_profile",
    "profile_ci": "_profile",
    "usable_cpus": "_cpus",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scaling' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


_accessor_hook.install()

__all__ = [
    "FitResult",
    "GroupedFit",
    "Holdout",
    "compare",
    "compute_optimal",
    "enable_x64",
    "ensure_compilation_cache",
    "fit",
    "fit_dataarray",
    "forms",
    "holdout",
    "local_exponent",
    "lr_test",
    "plot_compute_optimal",
    "plot_fit",
    "profile",
    "profile_ci",
    "usable_cpus",
]
