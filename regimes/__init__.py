"""The paper's taxonomy as a tool: regimes of learning curves, duality, intrinsic dimension."""

from ._classify import LABELS, Classification, classify
from ._crossover import Crossover, crossover
from ._double_descent import DoubleDescent, detect_double_descent, monotone_mask
from ._duality import duality
from ._grid import edge_curves, plot_regime_map, regime_map
from ._intrinsic import (
    IntrinsicDimension,
    PredictedExponent,
    intrinsic_dimension,
    nearest_neighbors,
    predicted_exponent,
)

__all__ = [
    "LABELS",
    "Classification",
    "Crossover",
    "DoubleDescent",
    "IntrinsicDimension",
    "PredictedExponent",
    "classify",
    "crossover",
    "detect_double_descent",
    "duality",
    "edge_curves",
    "intrinsic_dimension",
    "monotone_mask",
    "nearest_neighbors",
    "plot_regime_map",
    "predicted_exponent",
    "regime_map",
]
