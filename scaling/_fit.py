"""``scaling.fit``: multi-start, batched, variable-projection fits of scaling laws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import _forms
from ._assemble import assemble
from ._engine import as_key, bootstrap_fits, run_batch, start_points
from ._forms import Form
from ._objectives import get_objective
from ._spec import Spec
from ._result import FitResult
from ._shared import GroupedFit, fit_shared
from ._validate import check_choice, prepare


def fit(
    form: Form | str,
    x,
    y,
    *,
    objective: str = "log_mse",
    delta: float = 1e-3,
    asymmetry: float = 10.0,
    weights=None,
    bootstrap: int = 0,
    key=None,
    fixed: Mapping[str, float] | None = None,
    starts: Mapping[str, np.ndarray] | None = None,
    n_random: int = 0,
    refine: int | None = None,
    optimizer: str = "lm",
    max_iter: int = 200,
    gtol: float = 1e-8,
    skipna: bool = False,
    errors: str = "raise",
    groups=None,
    shared: Sequence[str] | None = None,
) -> FitResult | GroupedFit:
    r"""Fit a scaling law to one curve or to a whole batch of curves at once.

    Nonlinear parameters (exponents, break points) start from a grid (plus optional
    random draws); every start is scored, the ``refine`` best are refined (see
    ``optimizer``) in one batched, jitted call, and the best optimum is kept. Parameters the law is linear in (``L_inf``, ``A``, ``E``...)
    are solved in closed form for given exponents (variable projection), which turns
    e.g. the ill-conditioned 5-parameter Chinchilla problem into a 2-parameter one.
    Computation is in float64 whatever the caller's JAX setting.

    Parameters
    ----------
    form : str or Form
        ``"power"``, ``"offset"``, ``"variance_limited"``, ``"broken"``, ``"chinchilla"``,
        ``"kaplan"``, any name registered with :func:`scaling.forms.register`, or a
        :class:`~scaling.forms.Form`.
    x : array_like or mapping
        Shape ``(n,)`` or broadcastable to ``y``; for two-variable forms a mapping
        ``{"N": ..., "D": ...}``. Must be > 0.
    y : array_like, shape (..., n)
        Losses; leading axes are independent curves, all fitted in one call.
    objective : {"log_mse", "log_huber", "mse", "asymmetric"}
        Summed (never averaged) loss of the residuals ``r = log(yhat) - log(y)``
        (``r = yhat - y`` for ``"mse"``): ``r^2``; Huber with ``delta`` (the Chinchilla
        recipe, ``delta=1e-3``); ``r^2`` with over-predictions (``r > 0``) weighted by
        ``asymmetry``, which pulls the fit towards the lower envelope of the points.
    delta : float
        Huber threshold in log units, for ``"log_huber"``.
    asymmetry : float
        Weight of over-predictions relative to under-predictions, for ``"asymmetric"``.
    weights : array_like, optional
        Per-point weights broadcastable to ``y``; each point's term is multiplied by its
        weight, so integer weights act as repeat counts (frequency weights) and
        ``1/sigma_i^2`` (log-space sigma for log objectives) gives inverse-variance
        weighting. Zero weight drops a point.
    bootstrap : int
        Number of bootstrap resamples of the points (fitted in one batched call) for
        percentile intervals via :meth:`FitResult.ci`. Needs ``key``.
    key : jax PRNG key or int
        Randomness for bootstrap resamples and random starts.
    fixed : mapping, optional
        Parameters held at given values, e.g. ``{"alpha": 1.0}``.
    starts : mapping, optional
        Start grid values replacing the form's grid for the named nonlinear parameters.
    n_random : int
        Extra random starts, uniform (in optimiser coordinates) over the grid's range.
    refine : int, optional
        How many of the best-scoring starts are refined; ``0`` refines every start.
        Default: 1 when the form has one nonlinear parameter (its profile is scanned
        densely by the start grid), else 4 per nonlinear parameter.
    optimizer : {"lm", "lbfgs"}
        Local refinement of the best starts. ``"lm"`` (default): Levenberg-Marquardt on
        all parameters of the objective (IRLS curvature for Huber/asymmetric losses).
        ``"lbfgs"``: optax L-BFGS on the projected objective first (the Chinchilla recipe),
        then the same Levenberg-Marquardt polish.
    max_iter, gtol : int, float
        Iteration limit per optimiser and gradient tolerance (scaled by
        ``max(1, objective)``).
    skipna : bool
        Treat NaN/inf points as missing (weight 0) instead of raising.
    errors : {"raise", "ignore"}
        Bad curves raise (default) or, with ``"ignore"``, give NaN parameters with status
        ``"invalid"`` (or ``"unidentifiable"``: fewer distinct x values than parameters)
        and a message in :attr:`FitResult.messages`.
    groups : array_like, optional
        A label per point (``y`` 1-D), e.g. the experiment. With ``shared``, one call fits
        every group with the ``shared`` parameters common and the others per group, and
        returns a :class:`~scaling.GroupedFit` (with the separate fits and
        :meth:`~scaling.GroupedFit.lr_test`).
    shared : sequence of str, optional
        Parameters common to all groups, e.g. ``["alpha"]`` or ``["alpha", "beta"]`` for
        Chinchilla with ``E, A, B`` per experiment.

    Returns
    -------
    FitResult
        ``.params`` (name -> array of the batch shape), ``.predict(x)``, ``.objective``,
        ``.converged``, ``.status``, and ``.ci(level)`` when bootstrapped.

    Raises
    ------
    ValueError
        NaN/inf input, ``x <= 0``, ``y <= 0`` with a log objective, fewer points than
        parameters + 1, a constant curve, mismatched shapes, unknown form or objective.

    Examples
    --------
    >>> import numpy as np, scaling
    >>> D = np.geomspace(1e2, 1e5, 12)
    >>> loss = 0.1 + 3.0 * D ** -0.45
    >>> res = scaling.fit("offset", D, loss)
    >>> {k: round(float(v), 3) for k, v in res.params.items()}
    {'L_inf': 0.1, 'A': 3.0, 'alpha': 0.45}
    >>> res.status
    'converged'

    References
    ----------
    Hoffmann et al. (2022), "Training compute-optimal LLMs", Appendix D.2 (Huber recipe);
    Besiroglu et al. (2024), "Chinchilla scaling: a replication attempt" (summed loss).
    """
    form = _forms.get(form)
    if fixed is not None:
        if not isinstance(fixed, Mapping):
            raise TypeError(f"fixed must be a mapping of parameter -> value, got {type(fixed).__name__}")
        if fixed:
            form = form.fix(**dict(fixed))
    obj = get_objective(objective, delta=delta, asymmetry=asymmetry)
    spec = make_spec(form, obj, refine=refine, optimizer=optimizer, max_iter=max_iter, gtol=gtol)
    check_choice("errors", errors, ("raise", "ignore"))
    if (groups is None) != (shared is None):
        raise ValueError("pass groups= (a label per point) and shared= (parameter names) together")
    if groups is not None:
        if bootstrap or n_random or starts:
            raise ValueError("a shared fit (groups=, shared=) does not take bootstrap, n_random or starts")
        return fit_shared(form, x, y, groups, shared, spec=spec, weights=weights, skipna=skipna,
                          fit_fn=lambda f, xx, yy, **kw: fit(f, xx, yy, objective=obj, max_iter=max_iter, gtol=gtol,
                                                             errors="ignore", **kw))
    for name, v in (("bootstrap", bootstrap), ("n_random", n_random)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    key = as_key(key)
    if (bootstrap or n_random) and key is None:
        raise ValueError(
            "bootstrap and n_random draw random numbers: pass an explicit key, e.g. key=jax.random.key(0) or key=0"
        )
    data = prepare(form, x, y, weights, log_objective=obj.log, skipna=skipna, errors=errors)
    key_starts, key_boot = _split(key)
    u_starts, grids = start_points(form, data, starts, n_random, key_starts)
    best = run_batch(spec, data.x, data.y, data.w, u_starts)
    boot = None
    if bootstrap:
        boot = bootstrap_fits(spec, data, best["u"], u_starts, int(bootstrap), key_boot)
    return assemble(spec, data, best, grids, u_starts, boot)


def _split(key):
    """Two keys, for random starts and for bootstrap resamples (``None`` stays ``None``)."""
    if key is None:
        return None, None
    import jax

    return jax.random.split(key)


def make_spec(form: Form, obj, *, refine, optimizer: str, max_iter, gtol) -> Spec:
    """Validate the optimiser options and freeze them with the form and objective."""
    check_choice("optimizer", optimizer, ("lm", "lbfgs"))
    if isinstance(gtol, bool) or not isinstance(gtol, (int, float, np.floating, np.integer)):
        raise TypeError(f"gtol must be a number, got {type(gtol).__name__}: {gtol!r}")
    if not (np.isfinite(gtol) and gtol > 0):
        raise ValueError(f"gtol must be finite and > 0, got {gtol!r}")
    if refine is None:
        refine = 1 if len(form.nonlinear) <= 1 else 4 * len(form.nonlinear)
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
        raise ValueError(f"refine must be an integer >= 0, got {refine!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    return Spec(form=form, objective=obj, max_iter=int(max_iter), gtol=float(gtol), refine=int(refine),
                optimizer=optimizer)


__all__ = ["fit"]
