"""Registered task and model kinds: one small frozen dataclass each, one table each.

A kind carries everything the rest of the package asks about it: its parameters (type and
default), the grid dims it reads, the dims one work unit computes together, its output
variables and its run function. :class:`~experiments.SweepSpec` validates against these
tables and :func:`~experiments.run_unit` dispatches through them, so a parameter cannot be
accepted in one place and ignored or rejected in another (the way
:func:`scaling.forms.register` serves fit forms).
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

REQUIRED = object()  # the default of a parameter that a spec must set


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a kind: its allowed types, default and (optionally) allowed values.

    Examples
    --------
    >>> import experiments
    >>> p = experiments.Param(float, 0.5, doc="spectral exponent")
    >>> p.check("alpha", 1), p.check("alpha", 0.25)
    (1.0, 0.25)
    """

    types: type | tuple[type, ...]
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple | None = None
    optional: bool = False  # None is allowed

    def check(self, name: str, value):
        """``value`` converted to the parameter's type, or a ValueError/TypeError naming it."""
        if value is None and (self.optional or self.default is None):
            return None
        types = self.types if isinstance(self.types, tuple) else (self.types,)
        if isinstance(value, bool) and bool not in types:
            raise TypeError(f"parameter {name!r} must be {_names(types)}, got {value!r}")
        if float in types and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            value = float(value)
            if not np.isfinite(value):
                raise ValueError(f"parameter {name!r} must be finite, got {value!r}")
        elif int in types and isinstance(value, (np.integer,)):
            value = int(value)
        elif list in types and isinstance(value, (tuple, np.ndarray)):
            value = list(np.asarray(value).tolist())
        if not isinstance(value, types):
            raise TypeError(f"parameter {name!r} must be {_names(types)}, got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(map(str, self.choices))}")
        return value


def _names(types) -> str:
    return " or ".join(t.__name__ for t in types)


@dataclasses.dataclass(frozen=True)
class TaskKind:
    """A task: where a unit's data come from.

    Attributes
    ----------
    name : str
    params : mapping name -> Param
    data : callable ``(spec, coords, key, n_pool, *, n_features=None, n_val=0) -> UnitData``
        The unit's data: ``n_pool`` nested training candidates, the test set and
        (for networks) ``n_val`` validation points.
    grid_dims : frozenset
        Grid dims this task reads (e.g. input ``noise``, ``n_classes`` for super-classing).
    images : bool
        Inputs are images (convolutional models and ``pool`` apply).
    features : bool
        ``data(..., n_features=P)`` returns the random-feature students' ``P`` features
        itself (and may give an exact ``covariance`` instead of a test set); otherwise
        random-feature models draw features of the inputs.
    doc : str
    """

    name: str
    params: Mapping[str, Param]
    data: Callable
    grid_dims: frozenset = frozenset()
    images: bool = False
    features: bool = False
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """A model: what one work unit computes from its data.

    Attributes
    ----------
    name : str
    params : mapping name -> Param
        A grid dim of the same name overrides the parameter cell by cell.
    unit_dims : tuple of str
        Dims computed together in one unit (shared data, factorisations, one device
        program), in this order, where the grid has them.
    required_dims : frozenset
        Grid dims the model needs (always including ``D`` and ``seed``).
    grid_dims : frozenset
        Further grid dims it reads.
    variables : callable ``spec -> tuple of str``
        The output variables (besides ``time_s``).
    run : callable ``(spec, unit_coords) -> dict``
        ``unit_coords`` maps every outer dim to its value; returns arrays over the unit
        dims (in ``spec.unit_dims`` order).
    images_only : bool
        Needs an image task.
    check : callable ``spec -> None``, optional
        Further validation (raises ValueError).
    nested_dims : tuple of str
        Unit dims whose values must increase strictly (nested training sets, feature prefixes).
    sharded : bool
        The run function spreads one unit over every local device itself (``jax.sharding``);
        the ``"devices"`` executor then runs units one after another instead of one per device.
    host_blas : bool or callable ``spec -> bool``
        The run function is host linear algebra (for a callable: in this spec, e.g. by the
        engine a parameter picks) (numpy/LAPACK): each unit runs with one BLAS
        thread wherever it runs (so its bits do not depend on the machine's core count), and
        the ``"local"`` executor runs as many units at once as there are cores. Units that
        would leave cores idle (a lone unit, the last of an uneven batch) get a share of the
        idle cores as :func:`host_threads`, for tasks of their own on a thread pool.
    doc : str
    """

    name: str
    params: Mapping[str, Param]
    unit_dims: tuple[str, ...]
    required_dims: frozenset
    grid_dims: frozenset
    variables: Callable
    run: Callable
    images_only: bool = False
    check: Callable | None = None
    nested_dims: tuple[str, ...] = ()
    sharded: bool = False
    host_blas: bool | Callable = False
    doc: str = ""

    def runs_on_host(self, spec) -> bool:
        """Whether ``spec``'s units are host linear algebra (see ``host_blas``).

        Examples
        --------
        >>> import experiments
        >>> spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "engine": "host"},
        ...                              grid={"D": [20], "P": [16], "seed": [0]}, n_test=50)
        >>> spec.model_kind.runs_on_host(spec)
        True
        """
        return bool(self.host_blas(spec)) if callable(self.host_blas) else bool(self.host_blas)


_HOST_THREADS: contextvars.ContextVar[int] = contextvars.ContextVar("host_threads", default=1)


def host_threads() -> int:
    """Threads a ``host_blas`` unit may run its own tasks on (each with one BLAS thread):
    1 while other units share the cores, more when the executor has idle cores for it. The
    numbers a unit computes must not depend on it.

    Examples
    --------
    >>> from experiments._kinds import host_threads
    >>> host_threads()
    1
    """
    return _HOST_THREADS.get()


TASKS: dict[str, TaskKind] = {}
MODELS: dict[str, ModelKind] = {}


def register_task(kind: TaskKind, *, overwrite: bool = False) -> TaskKind:
    """Add a task kind to the table that specs are validated against and dispatched through.

    Examples
    --------
    >>> import numpy as np, experiments
    >>> def data(spec, coords, key, n_pool, *, n_features=None, n_val=0):
    ...     x = np.linspace(-1, 1, n_pool + spec.n_test)[:, None] ** np.arange(1, 9)
    ...     y = np.sin(3 * x[:, 0])
    ...     return experiments.UnitData(x[:n_pool], y[:n_pool], x[n_pool:], y[n_pool:])
    >>> kind = experiments.TaskKind("sine", {"freq": experiments.Param(float, 3.0)}, data)
    >>> experiments.register_task(kind, overwrite=True).name
    'sine'
    >>> spec = experiments.SweepSpec(task={"kind": "sine"}, model={"kind": "rf_ridge", "ridge": 1e-3},
    ...                              grid={"D": [8, 16], "P": [8, 32], "seed": [0]}, n_test=50)
    >>> experiments.run(spec, progress=False).test_loss.shape
    (2, 2, 1)
    """
    return _register(TASKS, kind, TaskKind, "task", overwrite)


def register_model(kind: ModelKind, *, overwrite: bool = False) -> ModelKind:
    """Add a model kind (see :class:`ModelKind`); see :func:`register_task` for an example."""
    return _register(MODELS, kind, ModelKind, "model", overwrite)


def _register(table, kind, cls, what, overwrite):
    if not isinstance(kind, cls):
        raise TypeError(f"register_{what} needs a {cls.__name__}, got {type(kind).__name__}")
    if not isinstance(kind.name, str) or not kind.name.isidentifier():
        raise ValueError(f"a {what} kind's name must be an identifier, got {kind.name!r}")
    for name, p in kind.params.items():
        if not isinstance(p, Param):
            raise TypeError(f"{what} {kind.name!r}: parameter {name!r} must be a Param, got {type(p).__name__}")
    if kind.name in table and not overwrite and table[kind.name] is not kind:
        raise ValueError(f"{what} kind {kind.name!r} is already registered; pass overwrite=True to replace it")
    table[kind.name] = kind
    return kind


def task_kind(name) -> TaskKind:
    if name not in TASKS:
        raise ValueError(f"unknown task kind {name!r}; expected one of: {', '.join(TASKS)}")
    return TASKS[name]


def model_kind(name) -> ModelKind:
    if name not in MODELS:
        raise ValueError(f"unknown model kind {name!r}; expected one of: {', '.join(MODELS)}")
    return MODELS[name]


def resolve_params(what: str, kind_name: str, params: Mapping[str, Param], given: Mapping) -> dict:
    """Every parameter of a kind: the given values (type-checked) over the defaults."""
    bad = set(given) - set(params) - {"kind"}
    if bad:
        raise ValueError(f"unknown {kind_name} {what} parameters {sorted(bad)}; allowed: {sorted(params)}")
    out = {}
    for name, p in params.items():
        if name in given:
            out[name] = p.check(name, given[name])
        elif p.default is REQUIRED:
            raise ValueError(f"{kind_name} {what} needs parameter {name!r}")
        else:
            out[name] = p.default
    return out
