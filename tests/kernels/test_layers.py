"""The native layers against independent references: finite networks, closed forms, jit/vmap.

Networks with a single weight layer are linear Gaussian maps of the input, so the
empirical covariance of ``N`` independent output channels is an unbiased estimate of the
NNGP whose entry ``(i, j)`` has variance ``(K_ii K_jj + K_ij^2) / N`` exactly; the tests
allow 5 standard deviations. These cover pooling and strides where neural-tangents
0.6.5 cannot serve as the reference (see reference/nt/cases.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import stax
from scaling import enable_x64

N_CHANNELS, N_SEEDS = 4096, 3


def _monte_carlo_check(net, x):
    init_fn, apply_fn, kernel_fn = net
    with enable_x64():
        K = np.asarray(kernel_fn(x, None, "nngp"))
        est = 0.0
        for seed in range(N_SEEDS):
            _, params = init_fn(jax.random.key(seed), x.shape)
            f = np.asarray(apply_fn(params, jnp.asarray(x)))  # (n, channels) after global pooling
            est = est + f @ f.T / N_CHANNELS
        est = est / N_SEEDS
    d = np.diag(K)
    sd = np.sqrt((d[:, None] * d[None, :] + K**2) / (N_CHANNELS * N_SEEDS))
    assert np.all(np.abs(est - K) < 5 * sd), np.max(np.abs(est - K) / sd)
    return K


@pytest.fixture
def imgs(rng):
    return rng.standard_normal((3, 8, 8, 3))


@pytest.mark.parametrize("name, net", [
    ("conv-avgpool-gap", stax.serial(stax.Conv(N_CHANNELS, (3, 3)), stax.AvgPool((3, 3), (2, 2)), stax.GlobalAvgPool())),
    ("conv-avgpool-same-gap", stax.serial(stax.Conv(N_CHANNELS, (3, 3), b_std=0.3), stax.AvgPool((3, 3), (2, 2), "SAME"),
                                           stax.GlobalAvgPool())),
    ("strided-conv-gap", stax.serial(stax.Conv(N_CHANNELS, (2, 2), strides=(2, 1)), stax.GlobalAvgPool())),
    ("strided-valid-conv-gap", stax.serial(stax.Conv(N_CHANNELS, (3, 2), strides=(1, 3), padding="VALID", W_std=1.5),
                                            stax.GlobalAvgPool())),
])
def test_pooled_linear_networks_match_monte_carlo(name, net, imgs):
    _monte_carlo_check(net, imgs)


def test_position_wise_kernel_matches_monte_carlo(imgs):
    # AvgPool then Flatten: the kernel is the mean over output positions of the pooled
    # covariance; estimate it position by position (each position's channels are i.i.d.)
    init_fn, apply_fn, kernel_fn = stax.serial(stax.Conv(N_CHANNELS, (3, 3)), stax.AvgPool((2, 2), (2, 2), "SAME"))
    flat = stax.serial(stax.Conv(N_CHANNELS, (3, 3)), stax.AvgPool((2, 2), (2, 2), "SAME"), stax.Flatten())[2]
    with enable_x64():
        K = np.asarray(flat(imgs, None, "nngp"))
        est = 0.0
        for seed in range(N_SEEDS):
            _, params = init_fn(jax.random.key(seed), imgs.shape)
            F = np.asarray(apply_fn(params, jnp.asarray(imgs)))  # (n, 4, 4, C)
            est = est + np.einsum("ihwc,jhwc->ij", F, F) / (F.shape[1] * F.shape[2] * N_CHANNELS)
        est = est / N_SEEDS
    d = np.diag(K)
    sd = np.sqrt((d[:, None] * d[None, :] + K**2) / (N_CHANNELS * N_SEEDS))  # positions only average further
    assert np.all(np.abs(est - K) < 5 * sd)


def test_kernel_fn_is_jit_and_vmap_clean(rng):
    _, _, kernel_fn = stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(1))
    x = rng.standard_normal((4, 3)).astype(np.float32)
    eager = kernel_fn(x, None, "ntk")
    np.testing.assert_allclose(jax.jit(lambda a: kernel_fn(a, None, "ntk"))(x), eager, rtol=1e-6)
    batched = jax.vmap(lambda a: kernel_fn(a, None, "ntk"))(np.stack([x, 2 * x]))
    np.testing.assert_allclose(batched[0], eager, rtol=1e-6)
    np.testing.assert_allclose(batched[1], kernel_fn(2 * x, None, "ntk"), rtol=1e-6)


def test_identical_and_opposite_inputs_are_exact_at_correlation_one(rng):
    # relu at theta = 0: nngp = q/2 per layer, ntk factor 1/2; at theta = pi: nngp 0, ntk 0
    x = rng.standard_normal((1, 7))
    _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
    q = float(np.sum(x**2)) / 7
    with enable_x64():
        k = kernel_fn(np.r_[x, x, -x], None, ("nngp", "ntk"))
    nngp, ntk = np.asarray(k.nngp), np.asarray(k.ntk)
    np.testing.assert_allclose(nngp[:2, :2], q / 2, rtol=1e-15)
    np.testing.assert_allclose(ntk[:2, :2], q / 2 + q / 2, rtol=1e-15)
    assert nngp[0, 1] == nngp[0, 0] and ntk[0, 1] == ntk[0, 0]  # the same value, to the last bit
    assert nngp[0, 2] == 0.0 and ntk[0, 2] == 0.0


def test_gradients_of_the_kernel_are_finite_on_the_diagonal(rng):
    _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1), stax.Erf(), stax.Dense(1))
    x = rng.standard_normal((3, 4))
    with enable_x64():
        g = jax.grad(lambda a: jnp.sum(kernel_fn(a, None, "ntk")))(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(g)))


def test_bad_layers_and_calls_raise_clear_errors(rng):
    x = rng.standard_normal((2, 3))
    with pytest.raises(ValueError, match="Relu needs Gaussian inputs"):
        stax.Relu()[2](x, None, "nngp")
    with pytest.raises(ValueError, match="unknown get 'ntkk'"):
        stax.Dense(1)[2](x, None, "ntkk")
    with pytest.raises(ValueError, match="unknown parameterization 'NTK2'"):
        stax.Dense(1, parameterization="NTK2")
    with pytest.raises(ValueError, match="W_std must be a finite number >= 0"):
        stax.Dense(1, W_std=float("nan"))
    with pytest.raises(ValueError, match="unknown padding 'FULL'"):
        stax.Conv(1, (3, 3), padding="FULL")
    with pytest.raises(ValueError, match="x2 feature shape"):
        stax.Dense(1)[2](x, np.ones((2, 4)), "nngp")
    with pytest.raises(TypeError, match="unexpected keyword"):
        stax.Dense(1)[2](x, None, "nngp", diagonal_spatial=True)


@pytest.mark.parametrize("shape", [(1,), (7,), (5, 3), (64, 16), (3, 3, 4, 8), (1, 1, 1, 10), (70, 70)])
def test_layer_weights_are_the_normal_draw_of_their_shape(shape):
    """Weights are drawn as a prefix of a longer flat draw (fewer programs to compile when a
    sweep initialises many widths); with partitionable threefry the values are bit for bit
    ``random.normal(key, shape)``, alone and under vmap."""
    from kernels._layers._linear import _normal

    key = jax.random.key(11)
    assert np.array_equal(np.asarray(_normal(key, shape)), np.asarray(jax.random.normal(key, shape)))
    keys = jax.random.split(key, 3)
    ours = jax.vmap(lambda k: _normal(k, shape))(keys)
    assert np.array_equal(np.asarray(ours), np.asarray(jax.vmap(lambda k: jax.random.normal(k, shape))(keys)))
