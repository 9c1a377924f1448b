"""The README's Python examples run as written (a user copies them first).

Fenced ```python blocks run as scripts, each on its own. Inline code spans that are Python
calls (``ds.test_loss.scaling.fit("D", form="offset")``, ``scaling.forms.broken(2)``) run
too, in a namespace holding the packages, ``np``, ``xr`` and ``ds``: a small sweep Dataset
of ``test_loss`` over ``D``, ``P`` and ``seed`` (the README says so). Spans with ``...``
placeholders show a syntax, not a program, and spans that are not Python (shell commands,
file names, formulas) are skipped.
"""

import ast
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
PACKAGES = ("scaling", "kernels", "regimes", "experiments", "paper_figs", "np", "xr", "ds")


def inline_calls(text: str) -> list[str]:
    """Inline spans that are runnable Python calls on the README's names."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose)
    out = []
    for s in spans:
        s = s.strip()
        if "..." in s or "(" not in s:
            continue
        try:
            tree = ast.parse(s, mode="eval")
        except SyntaxError:
            continue
        root = tree.body
        if not isinstance(root, ast.Call):
            continue
        head = root.func
        while isinstance(head, (ast.Attribute, ast.Call)):
            head = head.value if isinstance(head, ast.Attribute) else head.func
        if isinstance(head, ast.Name) and head.id in PACKAGES and s not in out:
            out.append(s)
    return out


INLINE = inline_calls(TEXT)


def sweep_dataset():
    import xarray as xr

    rng = np.random.default_rng(0)
    D = np.geomspace(1e2, 1e5, 10)
    P = np.array([64, 256, 1024])
    seed = np.arange(3)
    clean = 0.05 + (2.0 + P[:, None, None] / 512) * D[None, None, :] ** -0.4
    loss = clean * np.exp(0.01 * rng.standard_normal((P.size, seed.size, D.size)))
    return xr.Dataset({"test_loss": (("P", "seed", "D"), loss, {"units": "mse"})},
                      coords={"P": P, "seed": seed, "D": D}, attrs={"sweep": "README example"})


def test_readme_has_examples():
    assert len(BLOCKS) >= 4
    assert 'ds.test_loss.scaling.fit("D", form="offset")' in INLINE


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples that write stores write them here
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {"__name__": "__readme__"})
    plt.close("all")
    assert capsys.readouterr().out.strip(), "every README example prints what it computed"


@pytest.mark.parametrize("snippet", INLINE)
def test_readme_inline_example_runs(snippet, tmp_path, monkeypatch):
    import importlib

    import xarray as xr

    monkeypatch.chdir(tmp_path)
    names = {"np": np, "xr": xr, "ds": sweep_dataset()}
    for pkg in PACKAGES[:5]:
        names[pkg] = importlib.import_module(pkg)
    eval(compile(snippet, f"README.md[inline {snippet!r}]", "eval"), names)
    plt.close("all")
