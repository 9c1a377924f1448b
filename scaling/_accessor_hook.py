"""Register the ``.scaling`` xarray accessor without importing xarray at ``import scaling``.

If xarray is already imported, the accessor is registered at once. Otherwise a small
finder on ``sys.meta_path`` waits for the first ``import xarray`` and registers the
accessor right after xarray's own module has run; it then removes itself. Nothing else
is touched: no module is imported early, no flag changes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys


def _register() -> None:
    importlib.import_module("scaling._xarray")


class _XarrayFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "xarray":
            return None
        _remove()
        import importlib.util

        spec = importlib.util.find_spec("xarray")
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            _register()

        loader.exec_module = exec_module
        return spec


_FINDER = _XarrayFinder()


def _remove() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def install() -> None:
    if "xarray" in sys.modules:
        _register()
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
