"""Kernels of wide networks, their spectra, and the learning curves the spectra predict.

Layout: ``_layers/`` (infinite-width layers, public as ``kernels.stax``, and the network
builders), ``_matrices/`` (kernel matrices: analytic, empirical, random features; spectra),
``_curves/`` (learning curves: theory from a spectrum, and measured).

The analytic kernels are the toolkit's own, in pure JAX: build architectures by hand
with ``kernels.stax`` (neural-tangents' layer grammar). neural-tangents is never imported;
its ``kernel_fn`` triples are accepted wherever an ``arch`` is.
"""

from . import stax
from ._curves._learning_curves import kernel_ridge_nested, krr_learning_curve, rf_learning_curve, rf_ridge_grid
from ._curves._theory import kare, krr_risk, krr_theory, rf_risk, rf_theory
from ._layers._architectures import cnn, mlp, myrtle, wide_resnet, wide_resnet_block
from ._matrices._empirical import empirical_kernel
from ._matrices._kernel_matrix import kernel_function, kernel_matrix
from ._matrices._random_features import random_feature_kernel, random_features, random_projection_features
from ._matrices._spectrum import Spectrum, SpectralExponent, spectral_exponent, spectrum, target_exponent

__all__ = [
    "SpectralExponent",
    "Spectrum",
    "cnn",
    "empirical_kernel",
    "kare",
    "kernel_function",
    "kernel_matrix",
    "kernel_ridge_nested",
    "krr_learning_curve",
    "krr_risk",
    "krr_theory",
    "mlp",
    "myrtle",
    "random_feature_kernel",
    "random_features",
    "random_projection_features",
    "rf_learning_curve",
    "rf_ridge_grid",
    "rf_risk",
    "rf_theory",
    "spectral_exponent",
    "spectrum",
    "stax",
    "target_exponent",
    "wide_resnet",
    "wide_resnet_block",
]
