"""Finite-width networks: training, vmap over seeds, sweeps on digits."""

import jax
import numpy as np
import pytest

import experiments


def test_vmapped_training_equals_training_each_seed_alone(rng):
    net = experiments.network("mlp", width=16, depth=1, out_dim=1)
    x = rng.standard_normal((2, 40, 5)).astype(np.float32)
    y = np.sin(x[..., :1]).astype(np.float32)
    cfg = experiments.TrainConfig(steps=50, eval_every=25, patience=None, learning_rate=1e-2)
    keys = jax.numpy.stack([jax.random.key(0), jax.random.key(1)])
    both = experiments.train(net, x, y, x[0, :5], y[0, :5], keys=keys, config=cfg)
    for s in range(2):
        alone = experiments.train(net, x[s:s + 1], y[s:s + 1], x[0, :5], y[0, :5], keys=keys[s:s + 1], config=cfg)
        np.testing.assert_allclose(alone.train_loss[0], both.train_loss[s], rtol=1e-5)


def test_mlp_sweep_on_digits_converges_and_loss_falls_with_D():
    spec = experiments.SweepSpec(
        task={"kind": "digits"}, model={"kind": "mlp", "depth": 2},
        grid={"D": [50, 200, 800], "width": [128], "seed": [0, 1]}, n_test=400,
        train={"steps": 3000, "eval_every": 100, "patience": 5, "learning_rate": 2e-3})
    ds = experiments.run(spec, progress=False)
    loss = ds.test_loss.mean("seed").squeeze().values
    assert np.all(np.diff(loss) < 0), loss
    assert (ds.converged == 1).all()  # early stopping fired: the validation loss stopped improving
    assert float(ds.test_accuracy.sel(D=800).mean()) > 0.9
    assert float(ds.train_loss.sel(D=50).mean()) < 0.1 * float(ds.test_loss.sel(D=50).mean())


def test_width_for_parameters_and_aspect_ratio():
    counts = []
    for depth in (1, 2, 4):
        w = experiments.width_for_parameters("mlp", depth, 30_000, (1, 64), out_dim=10)
        counts.append(experiments.network("mlp", width=w, depth=depth, out_dim=10).n_params((1, 64)))
    assert max(counts) / min(counts) < 1.03


def test_penultimate_features_of_a_trained_network(rng):
    net = experiments.network("cnn", width=8, depth=2, out_dim=10)
    params = net.init(0, (1, 8, 8, 1))
    F = experiments.penultimate_features(net, params, rng.standard_normal((5, 8, 8, 1)))
    assert F.shape == (5, 8)


def test_train_config_validation():
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        experiments.TrainConfig(loss="l1")
    with pytest.raises(ValueError, match="unknown network kind 'rnn'"):
        experiments.network("rnn", width=2, depth=1)


def test_width_for_parameters_is_memoised(monkeypatch):
    """A sweep asks for the same width once per cell: the binary search (one traced ``init``
    per step) runs once per distinct question."""
    from experiments import _networks

    calls = []
    original = _networks.Network.n_params

    def counting(self, input_shape):
        calls.append(1)
        return original(self, input_shape)

    monkeypatch.setattr(_networks.Network, "n_params", counting)
    args = ("mlp", 2, 12_345, (1, 17))
    first = experiments.width_for_parameters(*args, out_dim=3)
    n_first = len(calls)
    assert n_first > 3  # a real search happened
    assert experiments.width_for_parameters(*args, out_dim=3) == first
    assert len(calls) == n_first  # the second identical question traced nothing
    net = experiments.network("mlp", width=first, depth=2, out_dim=3)
    others = [abs(experiments.network("mlp", width=w, depth=2, out_dim=3).n_params((1, 17)) - 12_345)
              for w in (first - 1, first + 1)]
    assert abs(original(net, (1, 17)) - 12_345) <= min(others)  # and it is still the closest width
