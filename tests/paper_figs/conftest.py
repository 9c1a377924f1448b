"""Shared by the paper_figs tests: an independent seed-bootstrap exponent, a module-scoped output
folder, and the "figures are data" round-trip check (``figure_data``, ``assert_roundtrip``)."""

import dataclasses

import numpy as np
import pytest
import xarray as xr

import scaling


@pytest.fixture(scope="session")
def seed_bootstrap_alpha():
    """``f(curves (S, n), x, *, form, n_boot, seed)`` -> (alpha of the seed-mean curve, 2.5% and
    97.5% quantiles over resampled seeds): the tests' own estimate, apart from the figure code."""

    def estimate(curves, x, *, form="power", n_boot=300, seed=0):
        curves = np.asarray(curves, float)
        idx = np.random.default_rng(seed).integers(0, curves.shape[0], (n_boot, curves.shape[0]))
        central = float(scaling.fit(form, x, curves.mean(0)).params["alpha"])
        boot = scaling.fit(form, x, curves[idx].mean(1), errors="ignore").params["alpha"]
        lo, hi = np.nanquantile(boot, [0.025, 0.975])
        return central, float(lo), float(hi)

    return estimate


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("paper_figs_quick")


def figure_data(fig) -> list:
    """Everything a Figure draws, as plain data: per axes its scales, limits, title and labels,
    tick labels, legend texts, line data, collection offsets/paths/colour arrays, images and texts.
    Two figures with equal ``figure_data`` give the same PNG up to rendering."""
    fig.canvas.draw()  # resolves tick labels and autoscaled limits

    def collection(c):
        paths = [p.vertices for p in c.get_paths()]
        arr = c.get_array()
        return ("collection", type(c).__name__, np.asarray(c.get_offsets()), paths,
                None if arr is None else np.ma.filled(np.ma.asarray(arr, dtype=float), np.nan),
                np.asarray(c.get_facecolor()))

    items = [("suptitle", fig._suptitle.get_text() if fig._suptitle else "")]
    for ax in fig.axes:
        items.append(("axes", ax.get_xscale(), ax.get_yscale(), ax.get_xlim(), ax.get_ylim(), ax.get_title(),
                      ax.get_xlabel(), ax.get_ylabel(), [t.get_text() for t in ax.get_xticklabels()],
                      [t.get_text() for t in ax.get_yticklabels()]))
        legend = ax.get_legend()
        items.append(("legend", [t.get_text() for t in legend.get_texts()] if legend else []))
        items += [("line", ln.get_label(), np.asarray(ln.get_xydata(), dtype=float), ln.get_color(),
                   ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines()]
        items += [collection(c) for c in ax.collections]
        items += [("image", np.ma.filled(np.ma.asarray(im.get_array(), dtype=float), np.nan)) for im in ax.images]
        items += [("text", t.get_text(), t.get_position()) for t in ax.texts]
    return items


def _assert_same(a, b, where="figure"):
    if isinstance(a, (list, tuple)) and not isinstance(a, str):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    else:
        assert a == b or (a != a and b != b), (where, a, b)


def assert_same_figure(fig_a, fig_b):
    """Assert two Figures draw the same data (see :func:`figure_data`)."""
    _assert_same(figure_data(fig_a), figure_data(fig_b))


def assert_same_rows(rows_a, rows_b):
    """Assert two lists of report rows are identical field by field, verdicts included."""
    assert len(rows_a) == len(rows_b), ([r.quantity for r in rows_a], [r.quantity for r in rows_b])
    for a, b in zip(rows_a, rows_b):
        _assert_same(dataclasses.astuple(a), dataclasses.astuple(b), a.quantity)
        assert a.verdict == b.verdict, (a, b)


@pytest.fixture
def assert_roundtrip(tmp_path):
    """``check(module, ds)``: store ``ds`` as netCDF, reload it, and assert ``module.plot`` and
    ``module.rows`` give the same figure data and the same rows from both. Returns the reloaded ds."""
    import matplotlib.pyplot as plt

    from paper_figs import check_storable

    def check(module, ds):
        check_storable(ds, module.NAME)
        path = tmp_path / f"{module.NAME}.nc"
        ds.to_netcdf(path)
        back = xr.load_dataset(path)
        fig_a, fig_b = module.plot(ds), module.plot(back)
        try:
            assert_same_figure(fig_a, fig_b)
        finally:
            plt.close(fig_a)
            plt.close(fig_b)
        assert_same_rows(module.rows(ds), module.rows(back))
        return back

    return check


@pytest.fixture(scope="session")
def same_figure():
    """``same_figure(fig_a, fig_b)``: assert two Figures draw the same data (lines, collections,
    images, texts, limits, tick labels, legends)."""
    return assert_same_figure


@pytest.fixture(scope="session")
def same_rows():
    """``same_rows(rows_a, rows_b)``: assert two lists of report rows are identical (verdicts too)."""
    return assert_same_rows


@pytest.fixture(scope="session")
def figure_data_of():
    """``figure_data_of(fig)``: the plain data a Figure draws (see :func:`figure_data`)."""
    return figure_data


@pytest.fixture(scope="session")
def same_figure_data():
    """``same_figure_data(data_a, data_b)``: assert two ``figure_data`` results are identical."""
    return _assert_same
