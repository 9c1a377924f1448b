"""Declarative sweep specifications: a task, a model, a grid, training settings; validated up front."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._kinds import MODELS, model_kind, resolve_params, task_kind
from ._networks import TrainConfig

TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}

INTEGER_DIMS = {"D", "P", "seed", "width", "depth", "n_classes", "pool"}
UNITS = {"D": "samples", "P": "features", "width": "hidden units (channels)", "seed": "1", "noise": "input std",
         "n_classes": "classes", "ridge": "1", "depth": "layers", "pool": "pixels"}


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A sweep: ``task`` x ``model`` over every point of ``grid``.

    Parameters
    ----------
    task : mapping
        ``{"kind": ..., **params}``; kinds: ``teacher_student``, ``random_network_teacher``,
        ``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn``,
        ``embeddings``, or one added with :func:`~experiments.register_task`
        (``experiments.TASKS`` lists every kind with its parameters and defaults).
    model : mapping
        ``{"kind": ..., **params}``; kinds: ``rf_ridge`` (linear random-feature ridge
        regression), ``krr`` (NNGP/NTK kernel ridge regression), ``mlp``, ``cnn``, ``wrn``
        (finite networks trained with optax), or one added with
        :func:`~experiments.register_model` (``experiments.MODELS``).
    grid : mapping
        Dimension name -> list of values. Always ``D`` (training-set sizes) and ``seed``;
        ``P`` (features, or a parameter count for networks) for ``rf_ridge``; ``width`` or
        ``P`` for networks; optional ``noise`` (input noise), ``n_classes``
        (super-classing), ``ridge``, ``depth``, ``pool`` (average-pool size for images).
    train : mapping
        :class:`~experiments.TrainConfig` fields for networks.
    n_test : int
        Test points (ignored where the exact population risk is used).
    name : str

    Examples
    --------
    >>> import experiments
    >>> spec = experiments.SweepSpec(
    ...     task={"kind": "teacher_student", "n_features": 2000, "alpha": 0.5},
    ...     model={"kind": "rf_ridge"},
    ...     grid={"D": [16, 32, 64], "P": [16, 64], "seed": [0, 1]})
    >>> spec.dims, spec.n_cells
    (('D', 'P', 'seed'), 12)
    """

    task: Mapping
    model: Mapping
    grid: Mapping
    train: Mapping = dataclasses.field(default_factory=dict)
    n_test: int = 1000
    name: str = "sweep"

    def __post_init__(self):
        task = dict(self.task)
        model = dict(self.model)
        grid = {k: list(v) if isinstance(v, (list, tuple, np.ndarray)) else v for k, v in dict(self.grid).items()}
        train = dict(self.train)
        tkind, mkind = task_kind(task.get("kind")), model_kind(model.get("kind"))
        tk, mk = tkind.name, mkind.name
        resolve_params("task", tk, tkind.params, task)
        resolve_params("model", mk, mkind.params, model)
        missing = mkind.required_dims - set(grid)
        if missing:
            raise ValueError(f"grid is missing dims {sorted(missing)} needed by model {mk!r}")
        allowed = mkind.required_dims | mkind.grid_dims | tkind.grid_dims
        bad = set(grid) - allowed
        if bad:
            raise ValueError(f"grid dims {sorted(bad)} are not used by model {mk!r} on task {tk!r}; "
                             f"allowed: {sorted(allowed)}")
        if mkind.images_only and not tkind.images:
            raise ValueError(f"model {mk!r} needs image inputs; task {tk!r} is not an image data set")
        int_dims = INTEGER_DIMS | {name for kind in (tkind, mkind) for name, p in kind.params.items()
                                   if int in (p.types if isinstance(p.types, tuple) else (p.types,))
                                   and float not in (p.types if isinstance(p.types, tuple) else (p.types,))}
        for d, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid[{d!r}] must be a non-empty list, got {values!r}")
            arr = np.asarray(values)
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
                raise ValueError(f"grid[{d!r}] must hold finite numbers, got {values!r}")
            if d in int_dims and not np.all(arr == np.round(arr)):
                raise ValueError(f"grid[{d!r}] must hold integers, got {values!r}")
            if len(set(values)) != len(values):
                raise ValueError(f"grid[{d!r}] has repeated values {values!r}")
            if d in ("D", "P", "width", "depth", "n_classes", "pool") and np.any(arr < 1):
                raise ValueError(f"grid[{d!r}] values must be >= 1, got {values!r}")
            if d in ("noise", "ridge") and np.any(arr < 0):
                raise ValueError(f"grid[{d!r}] values must be >= 0, got {values!r}")
            if d in mkind.nested_dims and np.any(np.diff(arr) <= 0):
                raise ValueError(f"grid[{d!r}] must be strictly increasing (nested sizes), got {values!r}")
        bad = set(train) - TRAIN_KEYS
        if bad:
            raise ValueError(f"unknown train settings {sorted(bad)}; allowed: {sorted(TRAIN_KEYS)}")
        if not isinstance(self.n_test, (int, np.integer)) or self.n_test < 0:
            raise ValueError(f"n_test must be an integer >= 0, got {self.n_test!r}")
        object.__setattr__(self, "task", task)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "grid", {k: [int(v) if k in int_dims else float(v) for v in vals]
                                          for k, vals in grid.items()})
        object.__setattr__(self, "train", train)
        if mkind.check is not None:
            mkind.check(self)

    # ------------------------------------------------------------ structure
    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.grid)

    @property
    def unit_dims(self) -> tuple[str, ...]:
        """Dims computed together inside one work unit (shared data, factorisations, vmap)."""
        return tuple(d for d in MODELS[self.model["kind"]].unit_dims if d in self.grid)

    @property
    def task_kind(self):
        """The registered :class:`~experiments.TaskKind` of this spec's task."""
        return task_kind(self.task["kind"])

    @property
    def model_kind(self):
        """The registered :class:`~experiments.ModelKind` of this spec's model."""
        return model_kind(self.model["kind"])

    @property
    def variables(self) -> tuple[str, ...]:
        """The output variables of every cell (besides ``time_s``), from the model kind."""
        return tuple(self.model_kind.variables(self))

    @property
    def task_params(self) -> dict:
        """Every task parameter: the spec's values over the task kind's defaults."""
        return self.params("task")

    @property
    def model_params(self) -> dict:
        """Every model parameter: the spec's values over the model kind's defaults."""
        return self.params("model")

    def params(self, which: str, coords: Mapping | None = None) -> dict:
        """The task's or model's parameters at grid point ``coords``: a grid dim of the same
        name as a parameter overrides it there.

        Examples
        --------
        >>> import experiments
        >>> spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "krr", "ridge": 0.1},
        ...                              grid={"D": [10], "ridge": [0.0, 1.0], "seed": [0]})
        >>> spec.params("model", {"ridge": 1.0})["ridge"], spec.model_params["ridge"]
        (1.0, 0.1)
        """
        if which not in ("task", "model"):
            raise ValueError(f"which must be 'task' or 'model', got {which!r}")
        raw = self.task if which == "task" else self.model
        kind = task_kind(raw["kind"]) if which == "task" else model_kind(raw["kind"])
        out = resolve_params(which, kind.name, kind.params, raw)
        for k, v in (coords or {}).items():
            if k in kind.params:
                out[k] = kind.params[k].check(k, v)
        return out

    @property
    def outer_dims(self) -> tuple[str, ...]:
        return tuple(d for d in self.dims if d not in self.unit_dims)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

    @property
    def n_cells(self) -> int:
        return int(np.prod(self.shape))

    def units(self) -> list[dict]:
        """Every work unit: a mapping outer dim -> (index, value)."""
        outer = self.outer_dims
        return [dict(zip(outer, ((i, self.grid[d][i]) for d, i in zip(outer, idx))))
                for idx in itertools.product(*(range(len(self.grid[d])) for d in outer))]

    @property
    def cells_per_unit(self) -> int:
        return int(np.prod([len(self.grid[d]) for d in self.unit_dims]))

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {"name": self.name, "n_test": int(self.n_test), "task": dict(self.task), "model": dict(self.model),
                "grid": dict(self.grid), "train": dict(self.train)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def fingerprint(self) -> str:
        """A hash of everything that determines the results (not the name)."""
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: Mapping) -> "SweepSpec":
        d = dict(d)
        unknown = set(d) - {"name", "n_test", "task", "model", "grid", "train"}
        if unknown:
            raise ValueError(f"unknown top-level keys {sorted(unknown)}; expected name, n_test, task, model, grid, train")
        for k in ("task", "model", "grid"):
            if k not in d:
                raise ValueError(f"the spec needs a [{k}] table")
        return cls(task=d["task"], model=d["model"], grid=d["grid"], train=d.get("train", {}),
                   n_test=d.get("n_test", 1000), name=d.get("name", "sweep"))

    @classmethod
    def from_toml(cls, source) -> "SweepSpec":
        """Read a spec from a TOML file path or TOML text.

        Examples
        --------
        >>> import experiments
        >>> spec = experiments.SweepSpec.from_toml('''
        ... name = "demo"
        ... [task]
        ... kind = "digits"
        ... [model]
        ... kind = "krr"
        ... [grid]
        ... D = [50, 100, 200]
        ... seed = [0, 1]
        ... ''')
        >>> spec.unit_dims
        ('D',)
        """
        text = source
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                        and ("=" not in source or os.path.isfile(source))):  # runs/alpha=0.5/s.toml
            text = Path(source).read_text()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"invalid TOML in spec: {exc}") from None
        return cls.from_dict(data)


def as_spec(spec) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return SweepSpec.from_dict(spec)
    if isinstance(spec, (str, Path)):
        return SweepSpec.from_toml(spec)
    raise TypeError(f"spec must be a SweepSpec, a mapping or a TOML path/text, got {type(spec).__name__}")
