"""Kernel values against closed forms derived by hand, and finite networks against the limit."""

import math

import jax
import numpy as np
import pytest

import kernels


def arccos_relu(k11, k22, k12):
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]])
    (Cho & Saul 2009, arc-cosine kernels of degree 1 and 0)."""
    norm = np.sqrt(k11 * k22)
    theta = np.arccos(np.clip(k12 / norm, -1, 1))
    return (norm / (2 * np.pi)) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)), (np.pi - theta) / (2 * np.pi)


@pytest.fixture
def x(rng):
    return rng.standard_normal((7, 5))


def test_one_hidden_relu_layer_matches_the_arc_cosine_kernel(x):
    w, w_out = 1.3, 0.8
    arch = kernels.mlp(1, W_std=w, W_std_out=w_out, b_std=0.0)
    k0 = w**2 * x @ x.T / x.shape[1]  # first-layer pre-activation covariance
    d = np.diag(k0)
    e_relu, e_step = arccos_relu(d[:, None], d[None, :], k0)
    nngp = w_out**2 * e_relu
    ntk = w_out**2 * (e_relu + k0 * e_step)  # NTK parameterisation, no biases
    # The diagonal (theta = 0) is computed exactly, so agreement is to rounding everywhere.
    np.testing.assert_allclose(kernels.kernel_matrix(arch, x, kind="nngp"), nngp, rtol=1e-13)
    np.testing.assert_allclose(kernels.kernel_matrix(arch, x, kind="ntk"), ntk, rtol=1e-13)


def test_erf_nngp_matches_williams_closed_form(x):
    arch = kernels.mlp(1, activation="erf", W_std=1.0, W_std_out=1.0, b_std=0.0)
    k0 = x @ x.T / x.shape[1]
    d = np.diag(k0)
    ref = (2 / np.pi) * np.arcsin(2 * k0 / np.sqrt((1 + 2 * d[:, None]) * (1 + 2 * d[None, :])))
    np.testing.assert_allclose(kernels.kernel_matrix(arch, x, kind="nngp"), ref, rtol=1e-10)


def test_tiling_does_not_change_the_matrix(x, rng):
    arch = kernels.mlp(2)
    full = kernels.kernel_matrix(arch, x, batch_size=64)
    np.testing.assert_allclose(kernels.kernel_matrix(arch, x, batch_size=3), full, rtol=1e-8)
    x2 = rng.standard_normal((4, 5))
    cross = kernels.kernel_matrix(arch, x, x2, batch_size=2)
    np.testing.assert_allclose(cross, kernels.kernel_matrix(arch, np.r_[x, x2])[:7, 7:], rtol=1e-8)
    np.testing.assert_allclose(full, full.T, rtol=0, atol=0)


def test_float32_kernel_is_close_to_float64(x, tolerance):
    arch = kernels.mlp(2)
    k64 = kernels.kernel_matrix(arch, x)
    k32 = kernels.kernel_matrix(arch, x, dtype=np.float32)
    assert k32.dtype == np.float32
    np.testing.assert_allclose(k32, k64, rtol=tolerance(np.float32))


def test_tiles_on_disk_resume_without_recomputing(tmp_path, x, monkeypatch):
    import zarr

    from kernels._matrices import _kernel_matrix

    arch = kernels.mlp(1)
    ref = kernels.kernel_matrix(arch, x)
    store = tmp_path / "K.zarr"
    kernels.kernel_matrix(arch, x, batch_size=3, store=store)
    z = zarr.open_array(str(store), mode="a")
    done = z.attrs["tiles_done_ntk"]
    assert len(done) == 6  # 3 row blocks: upper triangle incl. diagonal
    # Simulate a run killed after four tiles: forget two, blank their values.
    z.attrs["tiles_done_ntk"] = done[:4]
    for i, j in done[4:]:
        z[i:i + 3, j:j + 3] = np.nan
        z[j:j + 3, i:i + 3] = np.nan
    calls = []
    real = _kernel_matrix._compiled_tile

    def counting(kernel_fn, kind):
        fn = real(kernel_fn, kind)
        return lambda *args: calls.append(1) or fn(*args)

    monkeypatch.setattr(_kernel_matrix, "_compiled_tile", counting)
    out = kernels.kernel_matrix(arch, x, batch_size=3, store=store)
    assert len(calls) == 2
    np.testing.assert_allclose(out[:], ref, rtol=1e-12)


def test_empirical_ntk_of_a_wide_network_approaches_the_analytic_ntk(x):
    def rms_error(width):
        errs = []
        for seed in range(12):
            init_fn, apply_fn, kernel_fn = kernels.mlp(1, width=width)
            _, params = init_fn(jax.random.key(seed), (-1, x.shape[1]))
            emp = kernels.empirical_kernel((init_fn, apply_fn, kernel_fn), params, x)
            ana = kernels.kernel_matrix((init_fn, apply_fn, kernel_fn), x)
            errs.append(np.linalg.norm(emp - ana) / np.linalg.norm(ana))
        return np.sqrt(np.mean(np.square(errs)))

    narrow, wide = rms_error(512), rms_error(8192)
    # Finite-width fluctuations shrink as width^-1/2 (~1.9/sqrt(width) here): over a 16x
    # wider network the fitted decay exponent must be near 1/2 (not 0: no convergence;
    # not 1: a bias), and the widest kernel within 3% of the limit.
    exponent = np.log(narrow / wide) / np.log(16)
    assert 0.33 < exponent < 0.68, exponent
    assert wide < 0.03
    init_fn, apply_fn, kernel_fn = kernels.mlp(1, width=256)
    _, params = init_fn(jax.random.key(0), (-1, x.shape[1]))
    a = kernels.empirical_kernel((init_fn, apply_fn, kernel_fn), params, x)
    b = kernels.empirical_kernel((init_fn, apply_fn, kernel_fn), params, x, implementation="ntk_vector_products")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    c = kernels.empirical_kernel((init_fn, apply_fn, kernel_fn), params, x, x[:3], implementation="auto")
    np.testing.assert_allclose(c, a[:, :3], rtol=1e-4, atol=1e-6)


def test_empirical_ntk_implementations_agree_with_several_outputs(x):
    # out_dim 3: the kernel averages the 3 outputs' NTKs; all implementations agree
    init_fn, apply_fn, _ = kernels.cnn(1, channels=4, out_dim=3, pool="flatten")
    imgs = np.random.default_rng(1).standard_normal((4, 4, 4, 2)).astype(np.float32)
    _, params = init_fn(jax.random.key(1), imgs.shape)
    ref = kernels.empirical_kernel(apply_fn, params, imgs, imgs[:2])
    for impl in ("ntk_vector_products", "auto"):
        np.testing.assert_allclose(kernels.empirical_kernel(apply_fn, params, imgs, imgs[:2], implementation=impl),
                                   ref, rtol=1e-4, atol=1e-6)
    # and the jacobian contraction equals the explicit definition
    f = lambda p, a: apply_fn(p, a)  # noqa: E731
    J1 = jax.jacrev(f)(params, imgs)
    J2 = jax.jacrev(f)(params, imgs[:2])
    flat = lambda J, n: np.concatenate([np.asarray(v).reshape(n, 3, -1) for v in jax.tree_util.tree_leaves(J)], -1)  # noqa: E731
    explicit = np.einsum("iop,jop->ij", flat(J1, 4), flat(J2, 2)) / 3
    np.testing.assert_allclose(ref, explicit, rtol=1e-5, atol=1e-6)


def test_random_features_average_to_the_nngp(x):
    # One hidden layer: E_init[f(x) f(x')] equals the analytic NNGP at any width.
    arch = kernels.mlp(1, width=256, out_dim=64)
    F = kernels.random_features(arch, x, 64 * 200, key=0, chunk=50)
    K_P = kernels.random_feature_kernel(F)
    nngp = kernels.kernel_matrix(arch, x, kind="nngp")
    assert np.linalg.norm(K_P - nngp) / np.linalg.norm(nngp) < 0.03


def test_random_projection_features_are_unbiased(rng):
    F = rng.standard_normal((6, 40))
    f = kernels.random_projection_features(F, 20000, key=3)
    np.testing.assert_allclose(kernels.random_feature_kernel(f), F @ F.T, rtol=0.05, atol=0.05 * np.abs(F @ F.T).max())


@pytest.mark.parametrize("arch", [kernels.cnn(2, pool="global"), kernels.cnn(1, pool="flatten"),
                                  kernels.myrtle(5, channels=4), kernels.wide_resnet(10, width_multiplier=1)])
def test_convolutional_kernels_are_symmetric_and_positive(arch, rng):
    imgs = rng.standard_normal((4, 8, 8, 3))
    K = kernels.kernel_matrix(arch, imgs, kind="ntk", batch_size=2)
    np.testing.assert_allclose(K, K.T, rtol=1e-10)
    assert np.linalg.eigvalsh(K).min() > -1e-10 * np.abs(K).max()


def test_bad_arguments_raise_clear_errors(x):
    with pytest.raises(ValueError, match="unknown kind 'ntk2'; expected one of: ntk, nngp"):
        kernels.kernel_matrix(kernels.mlp(1), x, kind="ntk2")
    with pytest.raises(ValueError, match="non-finite"):
        kernels.kernel_matrix(kernels.mlp(1), np.where(x > 1, np.nan, x))
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        kernels.mlp(1, activation="tanh")
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        kernels.mlp(0)
    with pytest.raises(ValueError, match="unknown implementation 'fast'; expected one of"):
        kernels.empirical_kernel(kernels.mlp(1), {}, x, implementation="fast")
    with pytest.raises(TypeError, match="stax"):
        kernels.kernel_matrix(3, x)
