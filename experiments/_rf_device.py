"""Random-feature ridge regression on every (D, P) cell of a unit as one device program.

The accelerator engine behind the ``rf_ridge`` model (``engine="device"``, and ``"auto"`` on a
GPU/TPU backend). It solves the same cells as the host engine (:mod:`experiments._rf`) with the
same sharing, written as one jitted JAX program per grid shape:

- the features ``relu(X W)`` are made on the device (the unit's data are moved there once);
- ``d < p`` (dual): the kernel ``F F^T`` grows over feature blocks, one Cholesky factor of
  the largest dual block per ``p``; every smaller ``d`` in one masked back-substitution (the
  factor of a leading block is the leading block of the factor);
- ``d >= p`` (primal): the normal equations grow over row blocks; the cells of one ``p`` are
  one batched Cholesky factorisation and one batched pair of triangular solves (a bucket per
  ``p``: no padding, one shape per ``p``);
- every cell's train and test errors in one batched product per ``p``.

No Python runs per cell: the loops over the grid's ``D`` and ``P`` values unroll at trace time
into one program, compiled once per grid shape and reused by every unit (seed) of a sweep.
On CPU devices the primal cells are one LAPACK call each instead of one batched call per
``p``: XLA's CPU runtime (jax 0.10, its concurrency-optimized scheduler) deadlocks on programs
with several batched LAPACK calls that may run at once (a batched Cholesky per ``p`` of a
9 x 9 grid hangs with every thread idle; ``tests/experiments/test_rf_device.py`` runs that
grid). The host engine is the faster one on CPU anyway.
Ridge only: ridgeless cells need LAPACK condition estimates and SVD least squares (the host
engine). A cell whose factor is not numerically positive definite is flagged and solved on the
host by least squares.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular
from scaling import enable_x64


def rf_grid_device(F_train, Y_train, F_test, Y_test, D, P, *, ridge: float, return_weights: bool = False,
                   inputs=None) -> dict:
    """Every ``(D, P)`` cell of random-feature ridge regression as one device program.

    Parameters
    ----------
    F_train : array (D_max, P_max) or None
        Features of the nested training candidates (None with ``inputs``).
    Y_train : array (D_max, c)
    F_test, Y_test : arrays (n_test, P_max) or None, (n_test, c)
    D, P : increasing ints
    ridge : float > 0
        ``K_p = F F^T / p + ridge I`` in the dual, ``F^T F + ridge p I`` in the primal (the host
        engine's convention).
    return_weights : bool
        Also return every cell's weights (for an exact population risk).
    inputs : tuple ``(X_train, X_test, W, relu)``, optional
        Make the features on the device: ``F = X W``, then ``max(F, 0)`` if ``relu``.

    Returns
    -------
    dict of ``(D, P)`` float64 arrays ``test_mse``, ``train_mse``, ``test_accuracy`` (argmax
    agreement for several outputs, NaN for one), the boolean ``(D, P)`` array ``factored``
    (False: the cell's factor was not numerically positive definite, its numbers are NaN);
    with ``return_weights``, ``weights[(i, j)]`` of shape ``(P[j], c)``; and ``F_train``,
    ``F_test`` (the features on the host, only when some cell was not factored).

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._rf_device import rf_grid_device
    >>> rng = np.random.default_rng(0)
    >>> F = rng.standard_normal((120, 40)); y = F[:, :1] + 0.1 * rng.standard_normal((120, 1))
    >>> out = rf_grid_device(F[:100], y[:100], F[100:], y[100:], [20, 100], [10, 40], ridge=1e-3)
    >>> out["test_mse"].shape, bool(out["factored"].all())
    ((2, 2), True)
    """
    D = tuple(int(d) for d in D)
    P = tuple(int(p) for p in P)
    ridge = float(ridge)
    if not (np.isfinite(ridge) and ridge > 0):
        raise ValueError(f"the device engine needs a finite ridge > 0, got {ridge!r} (ridgeless cells run on the host "
                         "engine)")
    if not D or not P or any(b <= a for a in (D, P) for a, b in zip(a, a[1:])) or min(D[0], P[0]) < 1:
        raise ValueError(f"D and P must be increasing positive sizes, got D={list(D)}, P={list(P)}")
    with enable_x64():
        Y_tr = jnp.asarray(np.asarray(Y_train, dtype=np.float64).reshape(len(Y_train), -1))
        Y_te = jnp.asarray(np.asarray(Y_test, dtype=np.float64).reshape(len(Y_test), Y_tr.shape[1]))
        if inputs is not None:
            X_tr, X_te, W, relu = inputs
            F_tr, F_te = _features(jnp.asarray(X_tr, jnp.float64), jnp.asarray(X_te, jnp.float64),
                                   jnp.asarray(W, jnp.float64), relu=bool(relu))
        else:
            F_tr, F_te = jnp.asarray(F_train, jnp.float64), jnp.asarray(F_test, jnp.float64)
        if F_tr.shape[0] != Y_tr.shape[0] or F_te.shape[0] != Y_te.shape[0]:
            raise ValueError(f"features and targets disagree in rows: train {F_tr.shape} vs {Y_tr.shape}, test "
                             f"{F_te.shape} vs {Y_te.shape}")
        if F_tr.shape[0] < D[-1] or F_tr.shape[1] < P[-1] or F_te.shape[1] != F_tr.shape[1]:
            raise ValueError(f"features train {F_tr.shape}, test {F_te.shape} cannot serve D up to {D[-1]} and P up "
                             f"to {P[-1]}")
        F_tr, Y_tr, F_te = F_tr[:D[-1], :P[-1]], Y_tr[:D[-1]], F_te[:, :P[-1]]
        batched = {dev.platform for dev in F_tr.devices()} != {"cpu"}
        out = _grid_program(F_tr, Y_tr, F_te, Y_te, jnp.float64(ridge), D=D, P=P, weights=bool(return_weights),
                            batched=batched)
        out = jax.device_get(out)
    result = {k: np.array(out[k], dtype=np.float64) for k in ("test_mse", "train_mse", "test_accuracy")}
    result["factored"] = np.asarray(out["factored"], dtype=bool)
    if return_weights:
        result["weights"] = {(i, j): np.array(out["weights"][j][i], dtype=np.float64)
                             for j in range(len(P)) for i in range(len(D))}
    if not result["factored"].all():
        F_tr, F_te = jax.device_get((F_tr, F_te))
        result["F_train"], result["F_test"] = np.asarray(F_tr, np.float64), np.asarray(F_te, np.float64)
    return result


@functools.partial(jax.jit, static_argnames=("relu",))
def _features(X_tr, X_te, W, *, relu: bool):
    F_tr, F_te = X_tr @ W, X_te @ W
    if relu:
        F_tr, F_te = jnp.maximum(F_tr, 0.0), jnp.maximum(F_te, 0.0)
    return F_tr, F_te


def _usable(diag, scale):
    """Per leading block (``k = 1..n``): whether its Cholesky diagonals are finite and above
    ``1e-7 sqrt(scale)`` (the host engine's test), as a running minimum over the diagonal."""
    good = jnp.where(jnp.isfinite(diag), diag, -jnp.inf) > 1e-7 * jnp.sqrt(scale)
    return jax.lax.cummin(good.astype(jnp.int32), axis=0) > 0


@functools.partial(jax.jit, static_argnames=("D", "P", "weights", "batched"))
def _grid_program(F_tr, Y_tr, F_te, Y_te, ridge, *, D: tuple, P: tuple, weights: bool, batched: bool):
    nD, c = len(D), Y_tr.shape[1]
    D_arr = np.asarray(D)
    thetas = {}  # (i, j) -> (p, c)
    ok = {}
    # dual cells d < p: the kernel over the largest dual block grows over feature blocks
    dual_rows = [d for d in D if d < P[-1]]
    if dual_rows:
        m_all = max(dual_rows)
        K = jnp.zeros((m_all, m_all), F_tr.dtype)
        prev = 0
        for j, p in enumerate(P):
            blk = F_tr[:m_all, prev:p]
            K = K + blk @ blk.T
            prev = p
            idx = [i for i in range(nD) if D[i] < p]
            if not idx:
                continue
            m = D[idx[-1]]
            A = K[:m, :m] / p + ridge * jnp.eye(m, dtype=K.dtype)
            L = jnp.linalg.cholesky(A)
            usable = _usable(jnp.diagonal(L), jnp.max(jnp.diagonal(A)))
            z = solve_triangular(L, Y_tr[:m], lower=True)
            mask = (np.arange(m)[:, None] < D_arr[idx][None, :]).astype(np.float64)  # (m, n): row < d
            Z = (z[:, None, :] * mask[:, :, None]).reshape(m, len(idx) * c)
            alpha = solve_triangular(L.T, Z, lower=False).reshape(m, len(idx), c)
            theta = jnp.einsum("mp,mnc->npc", F_tr[:m, :p], alpha) / p
            for n, i in enumerate(idx):
                thetas[i, j] = theta[n]
                ok[i, j] = usable[D[i] - 1]
    # primal cells d >= p: the normal equations grow over row blocks; one batched solve per p
    primal_cols = [p for p in P if p <= D[-1]]
    if primal_cols:
        q = max(primal_cols)
        G = jnp.zeros((q, q), F_tr.dtype)
        R = jnp.zeros((q, c), F_tr.dtype)
        grams, rhs = [], []
        prev = 0
        for d in D:
            blk = F_tr[prev:d, :q]
            G = G + blk.T @ blk
            R = R + blk.T @ Y_tr[prev:d]
            prev = d
            grams.append(G)
            rhs.append(R)
        for j, p in enumerate(P):
            idx = [i for i in range(nD) if D[i] >= p]
            if not idx:
                continue
            A = jnp.stack([grams[i][:p, :p] for i in idx]) + ridge * p * jnp.eye(p, dtype=G.dtype)
            b = jnp.stack([rhs[i][:p] for i in idx])
            if batched:
                L = jnp.linalg.cholesky(A)
                theta = cho_solve((L, True), b)
            else:  # CPU: one LAPACK call per cell (see the module docstring)
                L = jnp.stack([jnp.linalg.cholesky(A[n]) for n in range(len(idx))])
                theta = jnp.stack([cho_solve((L[n], True), b[n]) for n in range(len(idx))])
            scale = jnp.max(jnp.diagonal(A, axis1=1, axis2=2), axis=1)
            usable = jax.vmap(_usable)(jnp.diagonal(L, axis1=1, axis2=2), scale)[:, -1]
            for n, i in enumerate(idx):
                thetas[i, j] = theta[n]
                ok[i, j] = usable[n]
    # every cell of a p through the train and test features in one product
    labels_te = jnp.argmax(Y_te, axis=1) if c > 1 else None
    test, train, acc, weights_out = [], [], [], []
    row = np.arange(F_tr.shape[0])
    for j, p in enumerate(P):
        Th = jnp.stack([thetas[i, j] for i in range(nD)])  # (nD, p, c)
        pred_te = jnp.einsum("tp,npc->ntc", F_te[:, :p], Th)
        err_te = pred_te - Y_te[None]
        test.append(jnp.mean(jnp.sum(err_te**2, axis=2), axis=1))
        if labels_te is not None:
            acc.append(jnp.mean((jnp.argmax(pred_te, axis=2) == labels_te[None]).astype(F_tr.dtype), axis=1))
        else:
            acc.append(jnp.full(nD, jnp.nan))
        err_tr = jnp.einsum("dp,npc->ndc", F_tr[:, :p], Th) - Y_tr[None]
        mask = (row[None, :] < D_arr[:, None]).astype(np.float64)  # (nD, D_max): the cell's rows
        train.append(jnp.einsum("nd,ndc->n", mask, err_tr**2) / D_arr)
        weights_out.append(Th)
    factored = jnp.stack([jnp.stack([ok[i, j] for j in range(len(P))]) for i in range(nD)])
    nan = jnp.where(factored, 0.0, jnp.nan)  # an unfactored cell's numbers are not numbers
    out = {"test_mse": jnp.stack(test, axis=1) + nan, "train_mse": jnp.stack(train, axis=1) + nan,
           "test_accuracy": jnp.stack(acc, axis=1) + nan, "factored": factored}
    if weights:
        out["weights"] = weights_out
    return out
