"""Unrolled Cholesky factorisation and solve of small symmetric positive-definite systems.

Elementwise over batch arrays (``k`` up to ~6): a few dozen fused operations where a LAPACK
call per tiny matrix would dominate compile and run time. One implementation serves the
compiled core (``xp = jax.numpy``) and the NumPy engine (``xp = numpy``), so both take the
same arithmetic steps. This module imports neither.
"""

from __future__ import annotations


def cholesky(entry, k: int, xp):
    """Lower factor ``L[i][j]`` (nested lists of batch arrays) and the pivots before the square
    root, of the symmetric matrix whose ``(i, j)`` entry is ``entry(i, j)``.

    Examples
    --------
    >>> import numpy as np
    >>> from scaling._unrolled import cholesky, solve
    >>> G = np.array([[4.0, 2.0], [2.0, 3.0]])
    >>> L, piv = cholesky(lambda i, j: G[i, j], 2, np)
    >>> [float(p) for p in piv], [float(c) for c in solve(L, [2.0, 1.0])]
    ([4.0, 2.0], [0.5, 0.0])
    """
    L = [[None] * k for _ in range(k)]
    piv = []
    for i in range(k):
        for j in range(i + 1):
            s = entry(i, j)
            for q in range(j):
                s = s - L[i][q] * L[j][q]
            if i == j:
                piv.append(s)
                L[i][i] = xp.sqrt(xp.maximum(s, 1e-300))
            else:
                L[i][j] = s / L[j][j]
    return L, piv


def solve(L, h):
    """``c`` (a list of batch arrays) with ``L L^T c = h``: forward, then back substitution."""
    k = len(h)
    z = [None] * k
    for i in range(k):
        s = h[i]
        for q in range(i):
            s = s - L[i][q] * z[q]
        z[i] = s / L[i][i]
    c = [None] * k
    for i in reversed(range(k)):
        s = z[i]
        for q in range(i + 1, k):
            s = s - L[q][i] * c[q]
        c[i] = s / L[i][i]
    return c
