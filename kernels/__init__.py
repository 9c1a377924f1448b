"""Kernels of wide networks, their spectra, and the learning curves the spectra predict.

The analytic kernels are the toolkit's own, in pure JAX: build architectures by hand
with ``kernels.stax`` (neural-tangents' layer grammar). neural-tangents is never imported;
its ``kernel_fn`` triples are accepted wherever an ``arch`` is.
"""

from ._architectures import cnn, mlp, myrtle, wide_resnet, wide_resnet_block
from ._empirical import empirical_kernel
from ._kernel_matrix import kernel_function, kernel_matrix
from ._learning_curves import kernel_ridge_nested, krr_learning_curve, rf_learning_curve, rf_ridge_grid
from . import stax
from ._random_features import random_feature_kernel, random_features, random_projection_features
from ._spectrum import Spectrum, SpectralExponent, spectral_exponent, spectrum, target_exponent
from ._theory import kare, krr_risk, krr_theory, rf_risk, rf_theory

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
