"""One work unit of a sweep, and the built-in task and model kinds that compute it.

``run_unit(spec, unit)`` is pure and deterministic: every cell's PRNG key derives from the
cell's own coordinates, so results do not depend on the executor, the order of units, or
on whether a sweep was interrupted and resumed. Tasks and models are registered
:class:`~experiments.TaskKind` / :class:`~experiments.ModelKind` objects; the spec is
validated against the same table that dispatches here, and every parameter is read
through ``spec.params`` (its declared default when a spec leaves it out).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import itertools
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from threadpoolctl import ThreadpoolController

import kernels
import scaling

from . import _prng
from ._datasets import load_dataset
from ._features import load_embeddings
from ._kinds import REQUIRED, ModelKind, Param, TaskKind, host_threads, model_kind, register_model, register_task
from ._networks import TrainConfig, _launch_training, _loss, network, predict, width_for_parameters
from ._rf import Workspace, _lstsq_cell, rf_grid
from ._rf_device import rf_grid_device
from ._spec import SweepSpec
from ._teacher_student import numpy_generator, projected_risk, sample_projected, teacher_student
from ._transforms import add_input_noise, superclass

METRICS = ("test_loss", "train_loss", "test_accuracy")


def unit_key(spec: SweepSpec, coords: dict, seed: int):
    """The PRNG key of a cell: the seed, folded with a stable hash of its other coordinates."""
    key = _prng.key(int(seed))
    rest = {k: v for k, v in sorted(coords.items()) if k != "seed"}
    if rest:
        key = _prng.fold_in(key, zlib.crc32(repr(rest).encode()) & 0x7FFFFFFF)
    return key


class UnitData:
    """A unit's data: nested training candidates (the first ``D`` train size ``D``), a test
    set and, for networks, a validation set; or, for Gaussian teacher-student features,
    the exact population covariance (or a batched exact ``risk`` of weight vectors)
    instead of a test set.

    Examples
    --------
    >>> import numpy as np, experiments
    >>> d = experiments.UnitData(np.zeros((4, 2)), np.zeros(4), np.zeros((3, 2)), np.zeros(3))
    >>> d.x_pool.shape, d.n_classes
    ((4, 2), None)
    """

    def __init__(self, x_pool, y_pool, x_test, y_test, labels_pool=None, labels_test=None, n_classes=None,
                 covariance=None, x_val=None, y_val=None, labels_val=None, risk=None):
        self.x_pool, self.y_pool, self.x_test, self.y_test = x_pool, y_pool, x_test, y_test
        self.labels_pool, self.labels_test, self.n_classes = labels_pool, labels_test, n_classes
        self.covariance = covariance
        self.risk = risk  # or: thetas -> exact population risks, in one batch
        self.x_val, self.y_val, self.labels_val = x_val, y_val, labels_val


# ---------------------------------------------------------------- tasks


def _teacher_student_data(spec, coords, key, n_pool, *, n_features=None, n_val=0):
    t = spec.params("task", coords)
    task = teacher_student(t["n_features"], t["alpha"], noise=t["noise"], teacher_weights=t["teacher_weights"],
                           target_alpha=t["target_alpha"])
    if n_features is not None:  # random-feature students: exact joint Gaussian draw
        exact = t["population_risk"]
        if exact and not _rf_variables(spec)[3:] and _projection_is_cheaper(spec, n_pool, n_features):
            # few points, many features: project drawn teacher features (n P S) instead of
            # building the P x P feature covariance (P^2 S); the same joint law
            f, y = sample_projected(task, key, n_pool, n_features)
            expected = t["projection_risk"] == "expected"
            return UnitData(f, y, f[:0], y[:0], risk=lambda thetas: projected_risk(
                task, key, n_pool, n_features, thetas, expected=expected))
        n = n_pool + (0 if exact else spec.n_test)
        f, y, cov = task.sample_features(key, n, n_features, return_covariance=True)
        if exact:
            return UnitData(f, y, f[:0], y[:0], covariance=cov)
        return UnitData(f[:n_pool], y[:n_pool], f[n_pool:], y[n_pool:])
    F, y = task.sample_inputs(key, n_pool + spec.n_test + n_val)
    e = n_pool + spec.n_test
    return UnitData(F[:n_pool], y[:n_pool], F[n_pool:e], y[n_pool:e], x_val=F[e:], y_val=y[e:])


def _projection_is_cheaper(spec, n_pool, n_features):
    # flops per unit: projection ~ S (3 n^2 + 2 n cells) (teacher draw, Gram, solve, risks);
    # covariance ~ 2 P^2 S (the P x P feature covariance)
    cells = spec.cells_per_unit
    return spec.model["kind"] == "rf_ridge" and 3 * n_pool**2 + 2 * n_pool * cells < 2 * n_features**2


@functools.lru_cache(maxsize=8)
def _teacher_network(input_dim, width, depth, activation, teacher_seed):
    teacher = network("mlp", width=width, depth=depth, out_dim=1, activation=activation)
    return teacher, teacher.init(jax.random.key(teacher_seed), (1, input_dim))


def _random_network_teacher_data(spec, coords, key, n_pool, *, n_features=None, n_val=0):
    t = spec.params("task", coords)
    d = t["input_dim"]
    k_x, _, k_e = _prng.split(key, 3)
    n = n_pool + spec.n_test + n_val
    gen = numpy_generator(k_x)
    x = gen.uniform(-1, 1, (n, d)) if t["inputs"] == "hypercube" else gen.standard_normal((n, d))
    teacher, params = _teacher_network(d, t["width"], t["depth"], t["activation"], t["teacher_seed"])
    y = np.asarray(teacher.apply(params, x), dtype=np.float64)[:, 0]
    y = y + np.sqrt(t["noise"]) * numpy_generator(k_e).standard_normal(n)
    e = n_pool + spec.n_test
    return UnitData(x[:n_pool], y[:n_pool], x[n_pool:e], y[n_pool:e], x_val=x[e:], y_val=y[e:])


@functools.lru_cache(maxsize=8)
def _images(kind: str, path, source, label, test_fraction):
    kw = {}
    if kind == "cifar100":
        kw["label"] = label
    if kind == "digits":
        kw["test_fraction"] = test_fraction
    else:
        kw["source"] = source
    return load_dataset(kind, path, **kw)


def _avg_pool(x, k):
    if k == 1:
        return x
    n, h, w, c = x.shape
    h2, w2 = h // k, w // k
    return x[:, : h2 * k, : w2 * k].reshape(n, h2, k, w2, k, c).mean(axis=(2, 4))


@functools.lru_cache(maxsize=16)
def _pooled(kind, path, source, label, test_fraction, pool):
    ds = _images(kind, path, source, label, test_fraction)
    x_tr, x_te = _avg_pool(ds.x_train, pool), _avg_pool(ds.x_test, pool)
    # standardisation constants of the (fixed) training split, once per data set
    mean = x_tr.mean(axis=0, keepdims=True)
    std = x_tr.std() + 1e-8
    return x_tr, ds.y_train, x_te, ds.y_test, ds.n_classes, mean, std


def _classification(spec, coords, key, x_tr, l_tr, x_te, l_te, n_classes, n_pool, n_val, t, stats=None):
    """Image/embedding data for one cell: super-classes, standardisation, input noise."""
    if "n_classes" in coords:
        groups = int(coords["n_classes"])
        mapping_key = _prng.key(t["superclass_seed"])
        l_tr = superclass(l_tr, groups, key=mapping_key) if groups < n_classes else l_tr
        l_te = superclass(l_te, groups, key=mapping_key) if groups < n_classes else l_te
        n_classes = min(groups, n_classes)
    k_perm, k_noise = _prng.split(key)
    if n_pool + n_val > x_tr.shape[0]:
        raise ValueError(f"the grid asks for {n_pool} training (+{n_val} validation) points but the data set has "
                         f"{x_tr.shape[0]}")
    # Validation points come from the end of the (fixed) training split, training
    # candidates from a per-cell permutation of the rest.
    val_idx = np.arange(x_tr.shape[0] - n_val, x_tr.shape[0])
    perm = numpy_generator(k_perm).permutation(x_tr.shape[0] - n_val)[:n_pool]
    mean, std = stats if stats is not None else (x_tr.mean(axis=0, keepdims=True), x_tr.std() + 1e-8)
    n_test = min(spec.n_test, x_te.shape[0]) if spec.n_test else x_te.shape[0]

    def prep(x):
        return ((x - mean) / std).astype(np.float32)

    x_pool, x_test, x_val = prep(x_tr[perm]), prep(x_te[:n_test]), prep(x_tr[val_idx])
    noise = float(coords.get("noise", 0.0))
    if noise:
        kn = _prng.split(k_noise, 3)
        x_pool = add_input_noise(x_pool, noise, key=kn[0])
        x_test = add_input_noise(x_test, noise, key=kn[1])
        x_val = add_input_noise(x_val, noise, key=kn[2])
    eye = np.eye(n_classes) - 1.0 / n_classes  # centred one-hot targets for squared losses
    lp, lt, lv = l_tr[perm], l_te[:n_test], l_tr[val_idx]
    return UnitData(x_pool, eye[lp], x_test, eye[lt], lp, lt, n_classes, x_val=x_val, y_val=eye[lv], labels_val=lv)


def _image_data(spec, coords, key, n_pool, *, n_features=None, n_val=0):
    t = spec.params("task", coords)
    kind = spec.task["kind"]
    x_tr, y_tr, x_te, y_te, n_classes, mean, std = _pooled(
        kind, t.get("path"), t.get("source"), t.get("label"), t.get("test_fraction"), int(coords.get("pool", 1)))
    return _classification(spec, coords, key, x_tr, y_tr, x_te, y_te, n_classes, n_pool, n_val, t, (mean, std))


@functools.lru_cache(maxsize=4)
def _embedding_arrays(path, variable, labels, test_fraction):
    X = load_embeddings(path, variable)
    lab = np.asarray(load_embeddings(labels) if isinstance(labels, str) else labels).ravel().astype(np.int64)
    if lab.shape[0] != X.shape[0]:
        raise ValueError(f"{lab.shape[0]} labels for {X.shape[0]} embeddings")
    order = np.random.default_rng(0).permutation(X.shape[0])
    n_te = int(round(test_fraction * X.shape[0]))
    te, tr = order[:n_te], order[n_te:]
    return X[tr], lab[tr], X[te], lab[te], int(lab.max()) + 1


def _embeddings_data(spec, coords, key, n_pool, *, n_features=None, n_val=0):
    t = spec.params("task", coords)
    labels = t["labels"] if isinstance(t["labels"], str) else tuple(t["labels"])
    x_tr, l_tr, x_te, l_te, n_classes = _embedding_arrays(t["path"], t["variable"], labels, t["test_fraction"])
    return _classification(spec, coords, key, x_tr, l_tr, x_te, l_te, n_classes, n_pool, n_val, t)


# Built-in kinds (overwrite=True: a re-import of this module, e.g. by doctest collection,
# replaces them with identical ones).
_builtin_task = functools.partial(register_task, overwrite=True)
_builtin_model = functools.partial(register_model, overwrite=True)
_SUPERCLASS = Param(int, 0, "seed of the random balanced map of classes to super-classes (grid dim n_classes)")
_FILES = {"path": Param(str, None, "directory holding the data set's files (default: the loader's)", optional=True),
          "source": Param(str, "files", "where the loader reads from", choices=("files", "tfds"))}
_IMAGE_DIMS = frozenset({"noise", "n_classes", "pool"})

_builtin_task(TaskKind("teacher_student", {
    "n_features": Param(int, 20000, "teacher features S (keep S >> every D and P)"),
    "alpha": Param(float, 0.5, "kernel spectrum lambda_i ~ i^-(1 + alpha)"),
    "noise": Param(float, 0.0, "label-noise variance (grid dim noise overrides it)"),
    "teacher_weights": Param(str, "ones", "unit or random N(0, 1) teacher weights", choices=("ones", "random")),
    "target_alpha": Param(float, None, "the target's own power law, v_i^2 ~ i^-(1 + target_alpha)", optional=True),
    "population_risk": Param(bool, True, "random-feature models: exact population risk instead of a test set"),
    "projection_risk": Param(str, "sampled", "few-point draws (D + cells << P): the risk of one draw of the unseen "
                             "part of the projection ('sampled'), or its exact average given the training features "
                             "('expected': same mean, less seed noise)", choices=("sampled", "expected")),
}, _teacher_student_data, grid_dims=frozenset({"noise"}), features=True,
    doc="linear random-feature teacher-student model with a power-law spectrum (Bahri et al. Sec. 3)"))
_builtin_task(TaskKind("random_network_teacher", {
    "input_dim": Param(int, 8, "input dimension d"),
    "depth": Param(int, 2, "teacher hidden layers"),
    "width": Param(int, 256, "teacher width"),
    "activation": Param(str, "relu", "teacher activation", choices=("relu", "erf", "gelu", "identity")),
    "noise": Param(float, 0.0, "label-noise variance (grid dim noise overrides it)"),
    "inputs": Param(str, "hypercube", "input distribution", choices=("hypercube", "gaussian")),
    "teacher_seed": Param(int, 0, "seed of the teacher's weights (shared by every cell)"),
}, _random_network_teacher_data, grid_dims=frozenset({"noise"}),
    doc="a randomly initialised MLP teacher on a d-dimensional hypercube or Gaussian inputs"))
_builtin_task(TaskKind("digits", {
    "test_fraction": Param(float, 0.3, "held-out fraction of scikit-learn's 1797 digits"),
    "superclass_seed": _SUPERCLASS,
}, _image_data, grid_dims=_IMAGE_DIMS, images=True, doc="scikit-learn's 8x8 digits"))
for _name in ("mnist", "fashion_mnist", "cifar10", "svhn"):
    _builtin_task(TaskKind(_name, {**_FILES, "superclass_seed": _SUPERCLASS}, _image_data, grid_dims=_IMAGE_DIMS,
                           images=True, doc=f"{_name} from files (see experiments.load_dataset)"))
_builtin_task(TaskKind("cifar100", {
    **_FILES, "label": Param(str, "fine", "fine (100) or coarse (20) labels", choices=("fine", "coarse")),
    "superclass_seed": _SUPERCLASS,
}, _image_data, grid_dims=_IMAGE_DIMS, images=True, doc="cifar100 from files"))
_builtin_task(TaskKind("embeddings", {
    "path": Param(str, REQUIRED, "embeddings: .npy, netCDF or zarr"),
    "variable": Param(str, None, "variable name in a netCDF/zarr file", optional=True),
    "labels": Param((str, list), REQUIRED, "labels: a .npy path or a list"),
    "test_fraction": Param(float, 0.2, "held-out fraction"),
    "superclass_seed": _SUPERCLASS,
}, _embeddings_data, grid_dims=frozenset({"noise", "n_classes"}), doc="pretrained features with labels"))


# ---------------------------------------------------------------- models


def _flat(x):
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=int)))


def _rf_unit(spec, coords):
    D, P = np.asarray(spec.grid["D"]), np.asarray(spec.grid["P"])
    m = spec.params("model", coords)
    key = unit_key(spec, coords, coords["seed"])
    k_data, k_feat = _prng.split(key)
    data = spec.task_kind.data(spec, coords, k_data, int(D[-1]), n_features=int(P[-1]))
    with Workspace() as ws:  # the features and the engine's scratch matrices: reused buffers
        return _rf_unit_cells(spec, m, D, P, k_feat, data, ws)


def rf_engine(engine: str, ridge: float) -> str:
    """The engine an ``rf_ridge`` unit runs on: ``"host"`` (float64 numpy/LAPACK, one BLAS
    thread per unit) or ``"device"`` (one JAX program on the default device). ``"auto"`` is
    the device where JAX's default backend is an accelerator and the ridge is positive (the
    host engine is the faster one on CPU, and ridgeless cells need its condition estimates
    and SVD least squares).

    Examples
    --------
    >>> from experiments import rf_engine
    >>> rf_engine("host", 1e-3), rf_engine("device", 1e-3), rf_engine("auto", 0.0)
    ('host', 'device', 'host')
    """
    if engine == "auto":
        return "device" if ridge > 0 and _accelerator_default() else "host"
    if engine == "device" and not ridge > 0:
        raise ValueError(f"engine 'device' needs ridge > 0, got {ridge!r}: ridgeless cells run on the host engine")
    return engine


def _rf_unit_cells(spec, m, D, P, k_feat, data, ws):
    engine = rf_engine(m["engine"], m["ridge"])
    for name in ("x_pool", "y_pool", "x_test", "y_test"):  # never a silent NaN loss
        values = np.asarray(getattr(data, name))
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            raise ValueError(f"the {spec.task['kind']!r} task's {name} holds {int(np.sum(~np.isfinite(values)))} "
                             "non-finite values (NaN or inf)")
    if spec.task_kind.features:
        F_tr, F_te = _flat(data.x_pool), _flat(data.x_test)
    else:
        X = np.concatenate([_flat(data.x_pool), _flat(data.x_test)])
        n_in, n_tr = X.shape[1], data.x_pool.shape[0]
        W = numpy_generator(k_feat).standard_normal((n_in, int(P[-1])))
        # relu(z) sqrt(2) = relu(sqrt(2) z): the scale goes into W, features made in place
        W *= (np.sqrt(2.0) if m["features"] == "relu" else 1.0) / np.sqrt(n_in)
        if engine == "device":  # features made on the device from the unit's inputs, moved once
            return _rf_device_cells(spec, m, D, P, data, None, None, (X[:n_tr], X[n_tr:], W, m["features"] == "relu"))
        F = np.matmul(X, W, out=ws.empty((X.shape[0], W.shape[1])))
        if m["features"] == "relu":
            np.maximum(F, 0.0, out=F)
        F_tr, F_te = F[:n_tr], F[n_tr:]
    if engine == "device":
        return _rf_device_cells(spec, m, D, P, data, F_tr, F_te, None)
    y_tr = np.asarray(data.y_pool, np.float64).reshape(F_tr.shape[0], -1)
    y_te = np.asarray(data.y_test, np.float64).reshape(F_te.shape[0], y_tr.shape[1])
    cov = data.covariance
    risk = None
    if cov is not None:
        def risk(i, j, p, theta):
            return _covariance_risk(cov, p, theta)
    elif data.risk is not None:
        deferred = []

        def risk(i, j, p, theta):  # collected, then computed in one batch
            deferred.append((i, j, theta[:, 0]))
            return np.nan
    out = rf_grid(F_tr, y_tr, F_te, y_te, D, P, ridge=m["ridge"], risk=risk, threads=host_threads(), workspace=ws)
    if cov is None and data.risk is not None:
        risks = data.risk([t for _, _, t in deferred])
        for (i, j, _), r in zip(deferred, risks):
            out["test_mse"][i, j] = r
    result = {"test_loss": out["test_mse"], "train_loss": out["train_mse"], "test_accuracy": out["test_accuracy"]}
    if "excess_loss" in spec.variables:
        result["excess_loss"] = out["test_mse"] - _best_linear_risk(cov, P)[None, :]
    return result


def _rf_device_cells(spec, m, D, P, data, F_tr, F_te, inputs):
    """An ``rf_ridge`` unit on the device engine (:func:`~experiments._rf_device.rf_grid_device`):
    the same variables as the host engine. Cells whose factor was not numerically positive
    definite are solved on the host by least squares, and exact population risks are
    evaluated on the host from the weights."""
    scaling.ensure_compilation_cache()  # the grid's program compiles once per machine, not per process
    cov, exact = data.covariance, data.covariance is not None or data.risk is not None
    y_tr = np.asarray(data.y_pool, np.float64)
    y_tr = y_tr.reshape(y_tr.shape[0], -1)
    y_te = np.asarray(data.y_test, np.float64).reshape(np.shape(data.y_test)[0], y_tr.shape[1])
    out = rf_grid_device(F_tr, y_tr, F_te, y_te, D, P, ridge=m["ridge"], return_weights=exact, inputs=inputs)
    test, train, acc = out["test_mse"], out["train_mse"], out["test_accuracy"]
    weights = out.get("weights", {})
    for i, j in zip(*np.nonzero(~out["factored"])):
        d, p = int(D[i]), int(P[j])
        theta = _lstsq_cell(out["F_train"], y_tr, d, p, m["ridge"])
        weights[i, j] = theta
        residual = out["F_train"][:d, :p] @ theta - y_tr[:d]
        train[i, j] = float(np.sum(residual**2)) / d
        if not exact:
            pred = out["F_test"][:, :p] @ theta
            test[i, j] = float(np.mean(np.sum((pred - y_te) ** 2, axis=1)))
            acc[i, j] = (float(np.mean(np.argmax(pred, 1) == np.argmax(y_te, 1))) if y_te.shape[1] > 1 else np.nan)
    if cov is not None:
        for (i, j), theta in weights.items():
            test[i, j] = _covariance_risk(cov, int(P[j]), theta)
    elif data.risk is not None:
        cells = sorted(weights)
        for (i, j), r in zip(cells, data.risk([weights[c][:, 0] for c in cells])):
            test[i, j] = r
    if exact:  # as on the host engine: an exact risk has no test set to score accuracy on
        acc = np.full_like(test, np.nan)
    result = {"test_loss": test, "train_loss": train, "test_accuracy": acc}
    if "excess_loss" in spec.variables:
        result["excess_loss"] = test - _best_linear_risk(cov, P)[None, :]
    return result


@functools.cache
def _accelerator_default() -> bool:
    """Whether JAX's default backend is an accelerator. Without an accelerator plugin installed
    (``jax_plugins`` entry points or package, ``libtpu``) or with ``JAX_PLATFORMS=cpu`` it is
    the CPU, decided without starting JAX's backends (which a host-engine sweep never needs:
    15 ms of a cold sweep's 300)."""
    platforms = jax.config.jax_platforms
    if platforms and {p.strip() for p in str(platforms).split(",")} <= {"cpu"}:
        return False
    plugins = (bool(importlib.metadata.entry_points(group="jax_plugins"))
               or any(importlib.util.find_spec(m) is not None for m in ("jax_plugins", "libtpu")))
    return plugins and jax.default_backend() != "cpu"


def _rf_ridges(spec) -> list:
    """Every ridge a spec's cells use: the grid dim ``ridge``, else the model parameter."""
    return list(spec.grid["ridge"]) if "ridge" in spec.grid else [spec.model_params["ridge"]]


def _check_rf(spec):
    """The ridge is non-negative in every cell (grid dim ``ridge`` included), and positive for
    ``engine="device"``."""
    ridges = _rf_ridges(spec)
    negative = [r for r in ridges if not float(r) >= 0]
    if negative:
        raise ValueError(f"rf_ridge needs ridge >= 0, got ridge {negative[0]!r}")
    if spec.model_params["engine"] != "device":
        return
    bad = [r for r in ridges if not float(r) > 0]
    if bad:
        raise ValueError(f"rf_ridge engine 'device' needs ridge > 0 in every cell, got ridge {bad[0]!r}; "
                         "ridgeless cells need the host engine (engine 'host' or 'auto')")


def _rf_on_host(spec) -> bool:
    """Whether some unit of an ``rf_ridge`` spec runs on the host engine."""
    return any(rf_engine(spec.model_params["engine"], float(r)) == "host" for r in _rf_ridges(spec))


def _covariance_risk(cov, p: int, theta) -> float:
    """Exact population risk of the linear predictor ``f . theta`` on the first ``p`` features,
    from the joint covariance of ``(f, y)`` (``y`` last)."""
    t = theta[:, 0]
    return float(t @ cov[:p, :p] @ t - 2.0 * t @ cov[:p, -1] + cov[-1, -1])


def _best_linear_risk(cov: np.ndarray, P) -> np.ndarray:
    """The risk of the best linear predictor of ``y`` from the first ``p`` features, for each
    ``p`` in ``P``, from the joint covariance of ``(f, y)`` (``y`` last): for every nested ``p``
    from one Cholesky factor (prefix sums); when the features' covariance is singular (more
    student than teacher features: rank <= S), per ``p`` by minimum-norm least squares.

    Examples
    --------
    >>> import numpy as np
    >>> cov = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.5, 0.5, 1.0]])
    >>> _best_linear_risk(cov, np.array([1, 2])).tolist()
    [0.75, 0.5]
    """
    P = np.asarray(P, dtype=int)
    p_max = int(P[-1])
    try:
        L = np.linalg.cholesky(cov[:p_max, :p_max])
        if np.min(np.diag(L)) > 1e-7 * np.sqrt(np.max(np.diag(cov)[:p_max])):
            z = scipy.linalg.solve_triangular(L, cov[:p_max, -1], lower=True)
            return cov[-1, -1] - np.cumsum(z**2)[P - 1]
    except np.linalg.LinAlgError:
        pass
    out = np.empty(P.size)
    for k, p in enumerate(P):
        p = int(p)
        beta = np.linalg.lstsq(cov[:p, :p], cov[:p, -1], rcond=np.finfo(np.float64).eps * p)[0]
        out[k] = cov[-1, -1] - cov[:p, -1] @ beta
    return out


def _rf_variables(spec):
    exact = spec.task_kind.features and spec.task_params.get("population_risk", False)
    return METRICS + (("excess_loss",) if exact and spec.model_params["excess_loss"] else ())


@functools.lru_cache(maxsize=32)
def _krr_architecture(depth, activation, W_std, b_std):
    """One kernel function per architecture, so every unit reuses its compiled kernel tiles
    (``kernels.kernel_matrix`` caches them per kernel function)."""
    return kernels.mlp(depth, activation=activation, W_std=W_std, b_std=b_std)


def _krr_unit(spec, coords):
    scaling.ensure_compilation_cache()  # kernel tiles compile once per machine, not per process
    D = np.asarray(spec.grid["D"])
    m = spec.params("model", coords)
    key = unit_key(spec, coords, coords["seed"])
    data = spec.task_kind.data(spec, coords, key, int(D[-1]))
    X_tr, X_te = _flat(data.x_pool), _flat(data.x_test)
    arch = _krr_architecture(m["depth"], m["activation"], m["W_std"], m["b_std"])
    K = kernels.kernel_matrix(arch, np.concatenate([X_tr, X_te]), kind=m["kernel"])
    n = X_tr.shape[0]
    out = kernels.kernel_ridge_nested(K[:n, :n], K[n:, :n], data.y_pool, data.y_test, D, ridge=m["ridge"])
    return {"test_loss": out["test_mse"], "train_loss": out["train_mse"], "test_accuracy": out["test_accuracy"]}


_NET_VARIABLES = METRICS + ("steps", "converged", "width_used", "n_params")


def _net_unit(spec, coords):
    """Every (D, width or P, seed) cell of a network unit, trained in as few device programs
    as shapes allow: one program per (width bucket, D bucket), vmapped (and sharded over
    local devices) over width, D and seed, with training sets padded to the largest D and
    MLP/CNN widths to the widest of a bucket (masked copies, :meth:`Network.hidden_scale`)."""
    scaling.ensure_compilation_cache()  # training programs compile once per machine, not per process
    m = spec.params("model", coords)
    kind = spec.model["kind"]
    cfg = TrainConfig(**spec.train)
    depth = m["depth"]
    n_val = m["validation_size"] if m["validation_size"] is not None else (200 if cfg.patience is not None else 0)
    udims = spec.unit_dims
    cells = [dict(zip(udims, vals)) for vals in itertools.product(*(spec.grid[d] for d in udims))]
    cells = [{**coords, **c} for c in cells]
    datas = [spec.task_kind.data(spec, c, unit_key(spec, c, c["seed"]), int(c["D"]), n_val=n_val) for c in cells]
    d0 = datas[0]
    classification = d0.n_classes is not None
    out_dim = d0.n_classes if classification else 1
    kw = {} if kind == "wrn" else {"parameterization": m["parameterization"], "activation": m["activation"]}
    in_shape = (1,) + tuple(np.shape(d0.x_pool)[1:])

    def width_of(c):
        if "width" in c:
            return int(c["width"])
        if m["width"] is not None:
            return m["width"]
        return width_for_parameters(kind, depth, int(c["P"]), in_shape, out_dim=out_dim, **kw)

    def targets(d, which):
        if cfg.loss == "cross_entropy":
            if not classification:
                raise ValueError("cross_entropy needs a classification task")
            return np.asarray({"pool": d.labels_pool, "test": d.labels_test, "val": d.labels_val}[which])
        yv = {"pool": d.y_pool, "test": d.y_test, "val": d.y_val}[which]
        return np.asarray(yv, np.float32).reshape(yv.shape[0], -1)

    widths = [width_of(c) for c in cells]
    # Seeds share the test and validation sets of the unit's first draw.
    x_test = np.asarray(d0.x_test, np.float32)
    t_test = targets(d0, "test")
    x_val = np.asarray(d0.x_val, np.float32) if n_val else np.asarray(d0.x_pool[:1], np.float32)
    y_val = targets(d0, "val") if n_val else targets(d0, "pool")[:1]
    n = len(cells)
    res = {k: np.full(n, np.nan) for k in _NET_VARIABLES}
    nets = {w: network(kind, width=w, depth=depth, out_dim=out_dim, **kw) for w in sorted(set(widths))}
    n_params = {w: net.n_params(in_shape) for w, net in nets.items()}
    launched = []  # every program is dispatched before any result is awaited
    for ws in _width_buckets(widths, n_params, paddable=kind != "wrn"):
        # one width: its own network; several: copies of the widest, padded and masked
        net = nets[ws[0]] if len(ws) == 1 else nets[max(ws)].at_width(max(ws), width_mask=True)
        idx = [i for i in range(n) if widths[i] in ws]
        for bucket in _d_buckets([int(cells[i]["D"]) for i in idx], cfg.batch_size):
            group = [idx[j] for j in bucket]
            Dp = max(int(cells[i]["D"]) for i in group)
            x = np.stack([_pad(np.asarray(datas[i].x_pool, np.float32), Dp) for i in group])
            y = np.stack([_pad(targets(datas[i], "pool"), Dp) for i in group])
            keys = jnp.stack([jax.random.fold_in(unit_key(spec, cells[i], cells[i]["seed"]), 7) for i in group])
            collect = _launch_training(net, x, y, x_val, y_val, keys=keys, config=cfg,
                                       n_train=[int(cells[i]["D"]) for i in group],
                                       widths=None if len(ws) == 1 else [widths[i] for i in group])
            launched.append((net, group, collect))
    for net, group, collect in launched:
        fit = collect()
        preds = predict(net, fit.params, x_test, hidden_scale=fit.hidden_scale)  # the scale training used
        test_loss = np.asarray(jax.vmap(lambda p: jnp.mean(_loss(cfg, p, t_test)))(jnp.asarray(preds)))
        acc = (np.mean(np.argmax(preds, -1) == d0.labels_test[None], axis=1) if classification
               else np.full(len(group), np.nan))
        for j, i in enumerate(group):
            res["test_loss"][i], res["train_loss"][i], res["test_accuracy"][i] = test_loss[j], fit.train_loss[j], acc[j]
            res["steps"][i], res["converged"][i] = fit.steps[j], float(fit.converged[j])
            res["width_used"][i], res["n_params"][i] = widths[i], float(n_params[widths[i]])
    return res


def _width_buckets(widths, cost, *, paddable: bool = True, max_overhead: float = 2.0):
    """Groups of widths trained in one program, as zero-padded masked copies of the group's
    widest network. From the widest down, a width joins the group while the padded work
    (every cell at the widest network's ``cost``, e.g. its parameter count) stays within
    ``max_overhead`` times the work of the cells at their own widths: fewer compilations for
    at most that much more arithmetic (the same rule as the D buckets). Cells are counted:
    ``widths`` holds one entry per cell.

    Examples
    --------
    >>> _width_buckets([16, 32, 64] * 3, {16: 1482, 32: 3466, 64: 8970})
    [[64, 32, 16]]
    >>> _width_buckets([64, 203, 645, 2048], {64: 64, 203: 203, 645: 645, 2048: 2048})
    [[2048, 645], [203, 64]]
    """
    count = {w: widths.count(w) for w in set(widths)}
    if not paddable:
        return [[w] for w in sorted(count)]
    groups, cur, real = [], [], 0.0
    for w in sorted(count, reverse=True):
        n_cells = sum(count[v] for v in cur) + count[w]
        if cur and n_cells * cost[cur[0]] > max_overhead * (real + count[w] * cost[w]):
            groups.append(cur)
            cur, real = [], 0.0
        cur.append(w)
        real += count[w] * cost[w]
    return groups + [cur]


def _d_buckets(Ds, batch_size):
    """Groups of cells (indices into ``Ds``) trained in one program. Minibatch steps cost the
    same for every D, so all D share one program; full-batch steps cost ~D, so only sizes
    within a factor 2 are padded together (at most 2x the work, far fewer compilations)."""
    order = sorted(range(len(Ds)), key=lambda i: Ds[i])
    if batch_size is not None and batch_size <= min(Ds):
        return [order]
    groups, cur = [], []
    for i in order:
        if cur and Ds[i] > 2 * Ds[cur[0]]:
            groups.append(cur)
            cur = []
        cur.append(i)
    return groups + [cur]


def _pad(a, n):
    if a.shape[0] == n:
        return a
    return np.concatenate([a, np.zeros((n - a.shape[0],) + a.shape[1:], a.dtype)])


def _check_network(spec):
    given = [name for name, there in (("grid dim 'width'", "width" in spec.grid), ("grid dim 'P'", "P" in spec.grid),
                                      ("model parameter 'width'", spec.model.get("width") is not None)) if there]
    if len(given) != 1:
        raise ValueError(f"model {spec.model['kind']!r} needs exactly one of grid dims 'width' or 'P' (a parameter "
                         f"count) or a model parameter 'width'; got {', '.join(given) or 'none'}")


_NET_PARAMS = {
    "width": Param(int, None, "hidden width (channels for cnn, multiplier for wrn), if not a grid dim", optional=True),
    "depth": Param(int, 2, "hidden layers (wrn: 6n + 4)"),
    "parameterization": Param(str, "standard", "weight parameterization", choices=("standard", "ntk")),
    "activation": Param(str, "relu", "activation", choices=("relu", "erf", "gelu", "identity")),
    "validation_size": Param(int, None, "validation points for early stopping (default 200 with patience)",
                             optional=True),
}
_NET_DIMS = dict(unit_dims=("D", "width", "P", "seed"), required_dims=frozenset({"D", "seed"}),
                 grid_dims=frozenset({"width", "P", "depth"}), variables=lambda spec: _NET_VARIABLES, run=_net_unit,
                 check=_check_network, sharded=True)

_builtin_model(ModelKind("rf_ridge", {
    "ridge": Param(float, 0.0, "ridge: K_P = F F^T / P + ridge I (grid dim ridge overrides it)"),
    "features": Param(str, "relu", "random features of the inputs (teacher-student tasks give their own)",
                      choices=("relu", "linear")),
    "engine": Param(str, "auto", "where the unit runs: 'host' (numpy/LAPACK), 'device' (one JAX program; ridge > 0), "
                                 "'auto' (the device on a GPU/TPU backend when ridge > 0, else the host)",
                    choices=("auto", "host", "device")),
    "excess_loss": Param(bool, True, "with an exact population risk, also the excess over the best P-feature "
                                     "predictor (costs P^2 S per unit; False lets few-point units project instead)"),
}, unit_dims=("D", "P"), required_dims=frozenset({"D", "P", "seed"}), grid_dims=frozenset({"ridge"}),
    variables=_rf_variables, run=_rf_unit, check=_check_rf, nested_dims=("D", "P"), host_blas=_rf_on_host,
    doc="linear random-feature ridge regression, every (D, P) of a seed from one feature draw"))
_builtin_model(ModelKind("krr", {
    "ridge": Param(float, 1e-6, "ridge on the Gram matrix (grid dim ridge overrides it)"),
    "kernel": Param(str, "ntk", "infinite-width kernel", choices=("ntk", "nngp")),
    "depth": Param(int, 2, "hidden layers of the MLP kernel (grid dim depth overrides it)"),
    "activation": Param(str, "relu", "activation", choices=("relu", "erf", "gelu", "identity")),
    "W_std": Param(float, float(np.sqrt(2.0)), "weight standard deviation"),
    "b_std": Param(float, 0.0, "bias standard deviation"),
}, unit_dims=("D",), required_dims=frozenset({"D", "seed"}), grid_dims=frozenset({"ridge", "depth"}),
    variables=lambda spec: METRICS, run=_krr_unit, nested_dims=("D",),
    doc="kernel ridge regression with an MLP's NNGP or NTK, every D of a seed from one factorisation"))
_builtin_model(ModelKind("mlp", _NET_PARAMS, **_NET_DIMS, doc="fully connected network trained with optax"))
_builtin_model(ModelKind("cnn", _NET_PARAMS, **_NET_DIMS, images_only=True, doc="convolutional network"))
_builtin_model(ModelKind("wrn", {k: _NET_PARAMS[k] for k in ("width", "validation_size")}
                         | {"depth": Param(int, 10, "depth 6n + 4")}, **_NET_DIMS, images_only=True,
                         doc="wide residual network"))


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The process's BLAS libraries, found once (``threadpool_limits`` looks them up on every
    call: about 1 ms, a tenth of a small unit)."""
    return ThreadpoolController()


def run_unit(spec: SweepSpec, unit: dict) -> dict:
    """Compute every cell of one unit. ``unit`` maps outer dims to ``(index, value)``.

    Returns a dict ``variable -> array`` over the unit dims (in ``spec.unit_dims`` order),
    plus ``time_s`` (wall time per cell).

    Examples
    --------
    >>> import experiments
    >>> spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "ridge": 1e-3},
    ...                              grid={"D": [20, 40], "P": [16, 64], "seed": [0, 1]}, n_test=100)
    >>> out = experiments.run_unit(spec, spec.units()[0])
    >>> out["test_loss"].shape, sorted(out)
    ((2, 2), ['test_accuracy', 'test_loss', 'time_s', 'train_loss'])
    """
    t0 = time.perf_counter()
    coords = {d: v for d, (_, v) in unit.items()}
    kind = model_kind(spec.model["kind"])
    if kind.runs_on_host(spec):  # one BLAS thread: many small factorisations, units run side by side
        with _blas_controller().limit(limits=1, user_api="blas"):
            out = kind.run(spec, coords)
    else:
        out = kind.run(spec, coords)
    shape = tuple(len(spec.grid[d]) for d in spec.unit_dims)
    out = {k: np.asarray(v, dtype=np.float64).reshape(shape) for k, v in out.items()}
    missing = set(spec.variables) - set(out)
    if missing:
        raise ValueError(f"model {spec.model['kind']!r} returned no {sorted(missing)}")
    out["time_s"] = np.full(shape, (time.perf_counter() - t0) / spec.cells_per_unit)
    return out
