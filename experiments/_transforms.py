"""Data transformations from the paper: super-classing, input noise, nested subsets, standardisation."""

from __future__ import annotations

import jax
import numpy as np

from . import _prng
from ._teacher_student import numpy_generator


def superclass(labels, n_groups: int, *, mapping=None, key=0) -> np.ndarray:
    """Merge classes into ``n_groups`` super-classes (Bahri et al. 2021, Fig. 3).

    Parameters
    ----------
    labels : int array
    n_groups : int
        Number of super-classes (``1 < n_groups <= n_classes``).
    mapping : array of length n_classes, optional
        ``mapping[c]`` is the group of class ``c``. Default: a random balanced partition
        drawn from ``key`` (every group gets ``n_classes // n_groups`` or one more class).

    Returns
    -------
    int array of group labels in ``[0, n_groups)``

    Examples
    --------
    >>> import numpy as np, experiments
    >>> experiments.superclass(np.arange(10), 2, mapping=np.arange(10) % 2)
    array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    n_classes = int(labels.max()) + 1
    if not isinstance(n_groups, (int, np.integer)) or not 1 <= n_groups <= n_classes:
        raise ValueError(f"n_groups must be an integer in [1, {n_classes}], got {n_groups!r}")
    if mapping is None:
        perm = numpy_generator(key).permutation(n_classes)
        mapping = np.empty(n_classes, dtype=np.int64)
        mapping[perm] = np.arange(n_classes) % n_groups
    mapping = np.asarray(mapping)
    if mapping.shape != (n_classes,) or mapping.min() < 0 or mapping.max() >= n_groups:
        raise ValueError(f"mapping must have {n_classes} entries in [0, {n_groups}), got shape {mapping.shape}")
    return mapping[labels]


def add_input_noise(x, scale: float, *, key) -> np.ndarray:
    """``x + scale * N(0, 1)`` elementwise (Bahri et al. 2021, Fig. 3: input noise changes
    the data manifold's dimension and with it the exponent). ``scale`` is in the units of
    ``x`` (standardise first to make it relative).

    Examples
    --------
    >>> import numpy as np, experiments
    >>> x = np.zeros((1000, 4))
    >>> round(float(experiments.add_input_noise(x, 0.5, key=0).std()), 1)
    0.5
    """
    if not (np.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be finite and >= 0, got {scale!r}")
    x = np.asarray(x)
    if scale == 0:
        return x.copy()
    return (x + scale * numpy_generator(key).standard_normal(x.shape)).astype(x.dtype)


def nested_subsets(n: int, sizes, *, key) -> list[np.ndarray]:
    """Index arrays of nested training sets: the first ``D`` of one random permutation.

    Nested sets make learning curves smooth (each larger set adds points) and let one
    factorisation serve every size.

    Examples
    --------
    >>> import experiments
    >>> a, b = experiments.nested_subsets(100, [10, 30], key=0)
    >>> bool(set(a) <= set(b)), len(b)
    (True, 30)
    """
    sizes = [int(s) for s in sizes]
    if any(s < 1 or s > n for s in sizes):
        raise ValueError(f"subset sizes must lie in [1, {n}], got {sizes}")
    k = _prng.key(key)
    perm = np.asarray(jax.random.permutation(k, n))
    return [perm[:s] for s in sizes]


def standardize(x_train, *others, eps: float = 1e-8):
    """Standardise features with the mean and standard deviation of ``x_train`` (per feature).

    Returns the transformed ``x_train`` followed by the ``others`` (e.g. the test set).

    Examples
    --------
    >>> import numpy as np, experiments
    >>> tr, te = experiments.standardize(np.array([[0.0], [2.0]]), np.array([[1.0]]))
    >>> tr.ravel().tolist(), te.ravel().tolist()
    ([-1.0, 1.0], [0.0])
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > eps, std, 1.0)
    out = [(x_train - mean) / std] + [(np.asarray(o, dtype=np.float64) - mean) / std for o in others]
    return tuple(out) if others else out[0]
