"""How the package is built: imports flow one way, and ``import scaling`` is light."""

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "scaling"


def relative_imports(path: Path):
    tree = ast.parse(path.read_text())
    top, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            if node in tree.body:
                top.update(names)
            else:
                nested.extend(names)
    return top, nested


def test_no_import_inside_a_function_and_no_cycle():
    graph = {}
    for path in PKG.glob("*.py"):
        top, nested = relative_imports(path)
        assert not nested, f"{path.name} imports {nested} inside a function (a hidden cycle?)"
        graph[path.stem] = {m for m in top if (PKG / f"{m}.py").exists()}
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for d in graph.get(m, ()):
            assert state.get(d) != "open", f"import cycle: {' -> '.join(stack + [m, d])}"
            if d not in state:
                visit(d, stack + [m])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [])
    # the result only holds data and asks: it never imports the fitting front end
    assert not graph["_result"] & {"_fit", "_shared", "_assemble", "_compare", "_xarray"}


def test_import_scaling_loads_no_heavy_dependency():
    code = ("import sys, scaling; print(sorted(m for m in ('jax', 'xarray', 'pandas', 'matplotlib', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_accessor_appears_when_xarray_is_imported_after_scaling():
    code = ("import scaling, numpy as np, xarray as xr; "
            "da = xr.DataArray(2.0 * np.geomspace(1, 1e3, 8) ** -0.5, dims='D', coords={'D': np.geomspace(1, 1e3, 8)}); "
            "print(round(float(da.scaling.fit('D', form='power').coefficients.sel(param='alpha')), 6))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0.5"
