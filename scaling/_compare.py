"""Model comparison (AIC/BIC) and extrapolation to held-out points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ._fit import fit
from ._forms import get
from ._result import FitResult


def compare(results: Mapping[str, FitResult] | list[FitResult]):
    r"""Information criteria of several fits of the same data.

    ``AIC = n log(RSS/n) + 2k`` and ``BIC = n log(RSS/n) + k log n`` for Gaussian
    residuals (log space for log objectives), their differences from the best form, and
    Akaike weights ``exp(-dAIC/2) / sum``.

    Parameters
    ----------
    results : mapping name -> FitResult, or list (named by form)

    Returns
    -------
    xarray.Dataset
        ``aic, bic, delta_aic, delta_bic, akaike_weight, n_params`` over a ``form`` dim
        (plus the fits' batch axes).

    Examples
    --------
    >>> import numpy as np, scaling
    >>> D = np.geomspace(10, 1e5, 20)
    >>> rng = np.random.default_rng(0)
    >>> y = (0.5 + 30 / D) * np.exp(0.01 * rng.standard_normal(20))
    >>> table = scaling.compare([scaling.fit(f, D, y) for f in ("variance_limited", "offset")])
    >>> str(table.delta_bic.idxmin("form").item())
    'variance_limited'
    """
    import xarray as xr

    if not isinstance(results, Mapping):
        results = list(results)
        bad = [type(r).__name__ for r in results if not isinstance(r, FitResult)]
        if bad:
            raise TypeError(f"compare takes FitResults (or a mapping name -> FitResult), got {bad}")
        names = [r.form.name for r in results]
        if len(set(names)) != len(names):
            raise ValueError(f"two fits share a form name {names}: pass a mapping name -> FitResult instead")
        results = dict(zip(names, results))
    if not results:
        raise ValueError("compare needs at least one fit")
    names = list(results)
    first = results[names[0]]
    for k, r in results.items():
        if r.y.shape != first.y.shape or not np.array_equal(r.y, first.y) or not np.array_equal(r.w, first.w):
            raise ValueError(f"fit {k!r} was made on different data from {names[0]!r}: criteria are not comparable")
        if r.spec.objective.log != first.spec.objective.log:
            raise ValueError("compare fits whose residuals live in the same space (all log objectives, or all 'mse')")
    dims = tuple(f"curve_{i}" for i in range(len(first.batch_shape)))
    aic = np.stack([np.asarray(results[k].aic, dtype=np.float64) for k in names])
    bic = np.stack([np.asarray(results[k].bic, dtype=np.float64) for k in names])
    d_aic = aic - np.fmin.reduce(aic, axis=0)  # NaN only where every fit of a curve is NaN
    d_bic = bic - np.fmin.reduce(bic, axis=0)
    weight = np.exp(-0.5 * d_aic)
    weight /= weight.sum(axis=0)
    ds = xr.Dataset(
        {
            "aic": (("form",) + dims, aic),
            "bic": (("form",) + dims, bic),
            "delta_aic": (("form",) + dims, d_aic),
            "delta_bic": (("form",) + dims, d_bic),
            "akaike_weight": (("form",) + dims, weight),
            "n_params": ("form", [results[k].n_params for k in names]),
        },
        coords={"form": names},
    )
    ds.attrs["note"] = "criteria of Gaussian residuals; lower is better; |delta| > 10 is strong evidence"
    return ds


class Holdout(NamedTuple):
    """A fit on part of a curve and its error on the held-out rest."""

    fit: FitResult
    test: np.ndarray  # boolean mask of held-out points
    predicted: np.ndarray  # prediction at the held-out points
    observed: np.ndarray
    relative_error: np.ndarray  # predicted / observed - 1
    log_rmse: float  # root mean square of log(predicted / observed)


def holdout(form, x, y, *, test=None, n_test: int | None = None, **fit_kwargs) -> Holdout:
    """Fit on the training points and report the error on held-out (e.g. largest-x) points.

    Parameters
    ----------
    form, x, y
        As for :func:`scaling.fit` (one curve).
    test : boolean array, optional
        Which points to hold out.
    n_test : int, optional
        Hold out the ``n_test`` points with the largest ``x`` (one-variable forms).
    **fit_kwargs
        Passed to :func:`scaling.fit`.

    Examples
    --------
    >>> import numpy as np, scaling
    >>> D = np.geomspace(1e2, 1e6, 16)
    >>> h = scaling.holdout("offset", D, 0.2 + 5 * D ** -0.5, n_test=4)
    >>> bool(abs(h.relative_error).max() < 1e-6)
    True
    """
    f = get(form)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"holdout works on one curve; got y of shape {y.shape}")
    if (test is None) == (n_test is None):
        raise ValueError("give exactly one of test= (a boolean mask) or n_test= (largest-x points)")
    if test is None:
        if len(f.variables) != 1:
            raise ValueError(f"n_test needs a one-variable form; for {f.name!r} pass a boolean test= mask")
        if not 0 < n_test < y.size:
            raise ValueError(f"n_test must be in [1, {y.size - 1}], got {n_test}")
        order = np.argsort(np.asarray(x, dtype=np.float64))
        test = np.zeros(y.size, bool)
        test[order[-n_test:]] = True
    test = np.asarray(test, dtype=bool)
    if test.shape != y.shape:
        raise ValueError(f"test mask has shape {test.shape}, data has {y.shape}")
    if test.all() or not test.any():
        raise ValueError("the test mask must hold out some but not all points")

    def part(a, mask):
        if isinstance(a, Mapping):
            return {k: np.asarray(v, dtype=np.float64)[mask] for k, v in a.items()}
        return np.asarray(a, dtype=np.float64)[mask]

    res = fit(f, part(x, ~test), y[~test], **fit_kwargs)
    pred = res.predict(part(x, test))
    obs = y[test]
    return Holdout(res, test, pred, obs, pred / obs - 1.0, float(np.sqrt(np.mean(np.log(pred / obs) ** 2))))
