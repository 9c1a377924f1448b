"""Sweeps that run anywhere: tasks, models, resumable storage, executors.

>>> import experiments
>>> sorted(experiments.SweepSpec.__dataclass_fields__)[:3]
['grid', 'model', 'n_test']
"""

from ._datasets import (
    Dataset,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    load_svhn,
    read_idx,
    write_idx,
)
from ._features import load_embeddings, penultimate_features
from ._hypercube import HypercubeTeacher, hypercube_teacher
from ._kinds import MODELS, TASKS, ModelKind, Param, TaskKind, register_model, register_task
from ._networks import Network, TrainConfig, network, pad_params, predict, train, unpad_params, width_for_parameters
from ._run import UnitsFailedWarning, run, summary
from ._spec import SweepSpec
from ._store import ReadOnlyStoreError, StoreError, export_netcdf, load
from ._teacher_student import TeacherStudent, teacher_student
from ._transforms import add_input_noise, nested_subsets, standardize, superclass
from ._units import UnitData, rf_engine, run_unit, unit_key

__all__ = [
    "MODELS",
    "TASKS",
    "Dataset",
    "HypercubeTeacher",
    "ModelKind",
    "Network",
    "ReadOnlyStoreError",
    "StoreError",
    "Param",
    "SweepSpec",
    "TaskKind",
    "TeacherStudent",
    "TrainConfig",
    "UnitData",
    "UnitsFailedWarning",
    "add_input_noise",
    "export_netcdf",
    "hypercube_teacher",
    "load",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_digits",
    "load_embeddings",
    "load_fashion_mnist",
    "load_mnist",
    "load_svhn",
    "nested_subsets",
    "network",
    "pad_params",
    "penultimate_features",
    "predict",
    "read_idx",
    "register_model",
    "register_task",
    "rf_engine",
    "run",
    "run_unit",
    "standardize",
    "summary",
    "superclass",
    "teacher_student",
    "train",
    "unit_key",
    "unpad_params",
    "width_for_parameters",
    "write_idx",
]
