"""One work unit of a sweep: data for the unit's coordinates, the model fitted on every cell.

``run_unit(spec, unit)`` is pure and deterministic: its PRNG keys derive from the unit's
coordinates only, so results do not depend on the executor, the order of units, or on
whether a sweep was interrupted and resumed.
"""

from __future__ import annotations

import functools
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np

import kernels

from ._datasets import load_dataset
from ._features import load_embeddings
from ._networks import TrainConfig, _loss, network, predict, train, width_for_parameters
from ._spec import IMAGE_TASKS, SweepSpec
from ._teacher_student import numpy_generator, teacher_student
from ._transforms import add_input_noise, superclass

METRICS = ("test_loss", "train_loss", "test_accuracy")


def unit_key(spec: SweepSpec, coords: dict, seed: int):
    """The PRNG key of a unit: the seed, folded with a stable hash of its other coordinates."""
    key = jax.random.key(int(seed))
    rest = {k: v for k, v in sorted(coords.items()) if k != "seed"}
    if rest:
        key = jax.random.fold_in(key, zlib.crc32(repr(rest).encode()) & 0x7FFFFFFF)
    return key


# ---------------------------------------------------------------- data


@functools.lru_cache(maxsize=8)
def _images(kind: str, path, source, label, test_fraction):
    kw = {}
    if kind == "cifar100":
        kw["label"] = label or "fine"
    if kind == "digits":
        kw["test_fraction"] = test_fraction or 0.3
    else:
        kw["source"] = source or "files"
    return load_dataset(kind, path, **kw)


def _avg_pool(x, k):
    if k == 1:
        return x
    n, h, w, c = x.shape
    h2, w2 = h // k, w // k
    return x[:, : h2 * k, : w2 * k].reshape(n, h2, k, w2, k, c).mean(axis=(2, 4))


class UnitData:
    """Training candidates (nested: the first D train size D), test set, targets."""

    def __init__(self, x_pool, y_pool, x_test, y_test, labels_pool=None, labels_test=None, n_classes=None,
                 covariance=None, x_val=None, y_val=None, labels_val=None):
        self.x_pool, self.y_pool, self.x_test, self.y_test = x_pool, y_pool, x_test, y_test
        self.labels_pool, self.labels_test, self.n_classes = labels_pool, labels_test, n_classes
        self.covariance = covariance
        self.x_val, self.y_val, self.labels_val = x_val, y_val, labels_val


def _classification(spec, coords, key, x_tr, l_tr, x_te, l_te, n_classes, n_pool, n_val=0):
    """Image/embedding data for one unit: super-classes, standardisation, input noise."""
    if "n_classes" in coords:
        groups = int(coords["n_classes"])
        mapping_key = jax.random.key(int(spec.task.get("superclass_seed", 0)))
        l_tr = superclass(l_tr, groups, key=mapping_key) if groups < n_classes else l_tr
        l_te = superclass(l_te, groups, key=mapping_key) if groups < n_classes else l_te
        n_classes = min(groups, n_classes)
    k_perm, k_noise = jax.random.split(key)
    if n_pool + n_val > x_tr.shape[0]:
        raise ValueError(f"the grid asks for {n_pool} training (+{n_val} validation) points but the data set has "
                         f"{x_tr.shape[0]}")
    # Validation points come from the end of the (fixed) training split, training
    # candidates from a per-unit permutation of the rest.
    val_idx = np.arange(x_tr.shape[0] - n_val, x_tr.shape[0])
    perm = np.asarray(jax.random.permutation(k_perm, x_tr.shape[0] - n_val))[:n_pool]
    mean = x_tr.mean(axis=0, keepdims=True)
    std = x_tr.std() + 1e-8
    n_test = min(spec.n_test, x_te.shape[0]) if spec.n_test else x_te.shape[0]

    def prep(x):
        return ((x - mean) / std).astype(np.float32)

    x_pool, x_test, x_val = prep(x_tr[perm]), prep(x_te[:n_test]), prep(x_tr[val_idx])
    noise = float(coords.get("noise", 0.0))
    if noise:
        kn = jax.random.split(k_noise, 3)
        x_pool = add_input_noise(x_pool, noise, key=kn[0])
        x_test = add_input_noise(x_test, noise, key=kn[1])
        x_val = add_input_noise(x_val, noise, key=kn[2])
    eye = np.eye(n_classes) - 1.0 / n_classes  # centred one-hot targets for squared losses
    lp, lt, lv = l_tr[perm], l_te[:n_test], l_tr[val_idx]
    return UnitData(x_pool, eye[lp], x_test, eye[lt], lp, lt, n_classes, x_val=x_val, y_val=eye[lv], labels_val=lv)


def unit_data(spec: SweepSpec, coords: dict, key, n_pool: int, n_features: int | None = None,
              n_val: int = 0) -> UnitData:
    t = spec.task
    kind = t["kind"]
    if kind == "teacher_student":
        task = teacher_student(int(t.get("n_features", 20000)), float(t.get("alpha", 0.5)),
                               noise=float(t.get("noise", 0.0)), teacher_weights=t.get("teacher_weights", "ones"),
                               target_alpha=t.get("target_alpha"))
        if n_features is not None:  # random-feature students: exact joint Gaussian draw
            exact = bool(t.get("population_risk", True))
            n = n_pool + (0 if exact else spec.n_test)
            f, y, cov = task.sample_features(key, n, n_features, return_covariance=True)
            if exact:
                return UnitData(f, y, f[:0], y[:0], covariance=cov)
            return UnitData(f[:n_pool], y[:n_pool], f[n_pool:], y[n_pool:])
        F, y = task.sample_inputs(key, n_pool + spec.n_test + n_val)
        return UnitData(F[:n_pool], y[:n_pool], F[n_pool:n_pool + spec.n_test], y[n_pool:n_pool + spec.n_test],
                        x_val=F[n_pool + spec.n_test:], y_val=y[n_pool + spec.n_test:])
    if kind == "random_network_teacher":
        d = int(t.get("input_dim", 8))
        k_x, k_t, k_e = jax.random.split(key, 3)
        n = n_pool + spec.n_test + n_val
        gen = numpy_generator(k_x)
        x = gen.uniform(-1, 1, (n, d)) if t.get("inputs", "hypercube") == "hypercube" else gen.standard_normal((n, d))
        teacher = network("mlp", width=int(t.get("width", 256)), depth=int(t.get("depth", 2)), out_dim=1,
                          activation=t.get("activation", "relu"))
        params = teacher.init(jax.random.key(int(t.get("teacher_seed", 0))), (1, d))
        y = np.asarray(teacher.apply(params, x), dtype=np.float64)[:, 0]
        y = y + np.sqrt(float(t.get("noise", 0.0))) * numpy_generator(k_e).standard_normal(n)
        return UnitData(x[:n_pool], y[:n_pool], x[n_pool:n_pool + spec.n_test], y[n_pool:n_pool + spec.n_test],
                        x_val=x[n_pool + spec.n_test:], y_val=y[n_pool + spec.n_test:])
    if kind in IMAGE_TASKS:
        ds = _images(kind, t.get("path"), t.get("source"), t.get("label"), t.get("test_fraction"))
        pool = int(coords.get("pool", 1))
        x_tr, x_te = _avg_pool(ds.x_train, pool), _avg_pool(ds.x_test, pool)
        return _classification(spec, coords, key, x_tr, ds.y_train, x_te, ds.y_test, ds.n_classes, n_pool, n_val)
    # embeddings
    X = load_embeddings(t["path"], t.get("variable"))
    labels = np.asarray(load_embeddings(t["labels"]) if isinstance(t.get("labels"), str) else t["labels"]).ravel()
    labels = labels.astype(np.int64)
    frac = float(t.get("test_fraction", 0.2))
    order = np.random.default_rng(0).permutation(X.shape[0])
    n_te = int(round(frac * X.shape[0]))
    te, tr = order[:n_te], order[n_te:]
    n_classes = int(labels.max()) + 1
    return _classification(spec, coords, key, X[tr], labels[tr], X[te], labels[te], n_classes, n_pool, n_val)


def _flat(x):
    return np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)


# ---------------------------------------------------------------- models


def _rf_unit(spec, coords, key):
    D, P = np.asarray(spec.grid["D"]), np.asarray(spec.grid["P"])
    ridge = float(coords.get("ridge", spec.model.get("ridge", 0.0)))
    k_data, k_feat = jax.random.split(key)
    if spec.task["kind"] == "teacher_student":
        data = unit_data(spec, coords, k_data, int(D[-1]), n_features=int(P[-1]))
        F_tr, F_te = data.x_pool, data.x_test
    else:
        data = unit_data(spec, coords, k_data, int(D[-1]))
        X_tr, X_te = _flat(data.x_pool), _flat(data.x_test)
        kind = spec.model.get("features", "relu")
        gen = numpy_generator(k_feat)
        W = gen.standard_normal((X_tr.shape[1], int(P[-1]))) / np.sqrt(X_tr.shape[1])
        if kind == "linear":
            F_tr, F_te = X_tr @ W, X_te @ W
        elif kind == "relu":
            F_tr, F_te = np.sqrt(2.0) * np.maximum(X_tr @ W, 0), np.sqrt(2.0) * np.maximum(X_te @ W, 0)
        else:
            raise ValueError(f"unknown features {kind!r}; expected one of: linear, relu")
    out = kernels.rf_ridge_grid(F_tr, data.y_pool, F_te, data.y_test, D, P, ridge=ridge,
                                population_covariance=data.covariance)
    # unit dims are (D, P): transpose from the (P, D) grid
    result = {"test_loss": out["test_mse"].T, "train_loss": out["train_mse"].T, "test_accuracy": out["test_accuracy"].T}
    if "floor_mse" in out:  # exact population risk: the excess over the best P-feature predictor
        result["excess_loss"] = (out["test_mse"] - out["floor_mse"][:, None]).T
    return result


def _krr_unit(spec, coords, key):
    D = np.asarray(spec.grid["D"])
    m = spec.model
    ridge = float(coords.get("ridge", m.get("ridge", 1e-6)))
    depth = int(coords.get("depth", m.get("depth", 2)))
    data = unit_data(spec, coords, key, int(D[-1]))
    X_tr, X_te = _flat(data.x_pool), _flat(data.x_test)
    arch = kernels.mlp(depth, activation=m.get("activation", "relu"), W_std=float(m.get("W_std", np.sqrt(2.0))),
                       b_std=float(m.get("b_std", 0.0)))
    K = kernels.kernel_matrix(arch, np.concatenate([X_tr, X_te]), kind=m.get("kernel", "ntk"))
    n = X_tr.shape[0]
    out = kernels.kernel_ridge_nested(K[:n, :n], K[n:, :n], data.y_pool, data.y_test, D, ridge=ridge)
    return {"test_loss": out["test_mse"], "train_loss": out["train_mse"], "test_accuracy": out["test_accuracy"]}


def _net_unit(spec, coords, seed_keys):
    m = spec.model
    kind = m["kind"]
    D = int(coords["D"])
    depth = int(coords.get("depth", m.get("depth", 2 if kind != "wrn" else 10)))
    cfg = TrainConfig(**spec.train)
    n_val = int(m.get("validation_size", 200 if cfg.patience is not None else 0))
    seeds = list(spec.grid["seed"])
    datas = [unit_data(spec, coords, k, D, n_val=n_val) for k in seed_keys]
    d0 = datas[0]
    classification = d0.n_classes is not None
    out_dim = d0.n_classes if classification else 1
    kw = {} if kind == "wrn" else {"parameterization": m.get("parameterization", "standard"),
                                   "activation": m.get("activation", "relu")}
    if "width" in coords or "width" in m:
        width = int(coords.get("width", m.get("width")))
    else:
        width = width_for_parameters(kind, depth, int(coords["P"]), (1,) + d0.x_pool.shape[1:], out_dim=out_dim, **kw)
    net = network(kind, width=width, depth=depth, out_dim=out_dim, **kw)

    def targets(d, which):
        if cfg.loss == "cross_entropy":
            if not classification:
                raise ValueError("cross_entropy needs a classification task")
            return {"pool": d.labels_pool, "test": d.labels_test, "val": d.labels_val}[which]
        y = {"pool": d.y_pool, "test": d.y_test, "val": d.y_val}[which]
        return np.asarray(y, np.float32).reshape(y.shape[0], -1)

    x = np.stack([np.asarray(d.x_pool, np.float32) for d in datas])
    y = np.stack([targets(d, "pool") for d in datas])
    x_val = np.asarray(d0.x_val, np.float32) if n_val else x[0, :1]
    y_val = targets(d0, "val") if n_val else y[0, :1]
    keys = jax.numpy.stack([jax.random.fold_in(k, 7) for k in seed_keys])
    res = train(net, x, y, x_val, y_val, keys=keys, config=cfg)
    # Seeds share the test set of the first seed's draw (same inputs; the noise draw
    # and super-class map do not depend on the seed's subset).
    x_test = np.asarray(d0.x_test, np.float32)
    preds = predict(net, res.params, x_test)
    t_test = targets(d0, "test")
    test_loss = np.asarray(jax.vmap(lambda p: jnp.mean(_loss(cfg, p, t_test)))(jnp.asarray(preds)))
    acc = np.mean(np.argmax(preds, -1) == d0.labels_test[None], axis=1) if classification else np.full(len(seeds), np.nan)
    return {"test_loss": test_loss, "train_loss": res.train_loss, "test_accuracy": acc,
            "steps": res.steps.astype(float), "converged": res.converged.astype(float),
            "width_used": np.full(len(seeds), float(width)), "n_params": np.full(len(seeds), float(net.n_params(
                (1,) + d0.x_pool.shape[1:])))}


def model_variables(spec: SweepSpec) -> tuple[str, ...]:
    if spec.model["kind"] in ("mlp", "cnn", "wrn"):
        return METRICS + ("steps", "converged", "width_used", "n_params")
    if (spec.model["kind"] == "rf_ridge" and spec.task["kind"] == "teacher_student"
            and spec.task.get("population_risk", True)):
        return METRICS + ("excess_loss",)  # test loss minus the best P-feature risk, exactly
    return METRICS


def run_unit(spec: SweepSpec, unit: dict) -> dict:
    """Compute every cell of one unit. ``unit`` maps outer dims to ``(index, value)``.

    Returns a dict ``variable -> array`` over the unit dims (in ``spec.unit_dims`` order),
    plus ``time_s`` (wall time per cell).
    """
    t0 = time.perf_counter()
    coords = {d: v for d, (_, v) in unit.items()}
    kind = spec.model["kind"]
    if kind in ("mlp", "cnn", "wrn"):
        keys = [unit_key(spec, coords, s) for s in spec.grid["seed"]]
        out = _net_unit(spec, coords, keys)
    else:
        key = unit_key(spec, coords, coords["seed"])
        out = _rf_unit(spec, coords, key) if kind == "rf_ridge" else _krr_unit(spec, coords, key)
    shape = tuple(len(spec.grid[d]) for d in spec.unit_dims)
    out = {k: np.asarray(v, dtype=np.float64).reshape(shape) for k, v in out.items()}
    out["time_s"] = np.full(shape, (time.perf_counter() - t0) / spec.cells_per_unit)
    return out
