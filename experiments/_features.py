"""Pretrained features: embeddings from files, or the penultimate layer of a network trained here."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_embeddings(path, variable: str | None = None) -> np.ndarray:
    """Embeddings ``(n, features)`` from a ``.npy`` file, a netCDF file or a zarr store.

    For netCDF/zarr, ``variable`` names the data variable (default: the only one).

    Examples
    --------
    >>> import numpy as np, tempfile, os, experiments
    >>> p = os.path.join(tempfile.mkdtemp(), "emb.npy")
    >>> np.save(p, np.ones((3, 2)))
    >>> experiments.load_embeddings(p).shape
    (3, 2)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no embeddings at {path}")
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        import xarray as xr

        # Stores may or may not carry consolidated metadata: consolidated=None reads both,
        # and the fallback warning is noise here.
        if path.suffix == ".zarr" or path.is_dir():
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated metadata")
                ds = xr.open_zarr(path)
        else:
            ds = xr.open_dataset(path)
        names = list(ds.data_vars)
        if variable is None:
            if len(names) != 1:
                raise ValueError(f"{path} holds variables {names}: pass variable=...")
            variable = names[0]
        if variable not in names:
            raise ValueError(f"{path} has no variable {variable!r}; it has {names}")
        arr = ds[variable].values
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        arr = arr.reshape(arr.shape[0], -1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"embeddings in {path} contain non-finite values")
    return arr


def penultimate_features(network, params, x, *, batch_size: int = 1024) -> np.ndarray:
    """Features of a trained :class:`~experiments.Network` (its last hidden layer) for ``x``.

    Examples
    --------
    >>> import jax, numpy as np, experiments
    >>> net = experiments.network("mlp", width=16, depth=1, out_dim=3)
    >>> params = net.init(jax.random.key(0), (1, 4))
    >>> experiments.penultimate_features(net, params, np.ones((5, 4))).shape
    (5, 16)
    """
    x = np.asarray(x)
    out = [np.asarray(network.features(params, x[i:i + batch_size])) for i in range(0, x.shape[0], batch_size)]
    F = np.concatenate(out)
    return F.reshape(F.shape[0], -1)
