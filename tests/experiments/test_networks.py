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


@pytest.mark.parametrize("kind,parameterization,activation", [("mlp", "ntk", "relu"), ("mlp", "standard", "erf"),
                                                              ("cnn", "ntk", "relu")])
def test_widths_padded_in_one_program_train_as_their_own_networks(rng, kind, parameterization, activation):
    """Copies of widths 4, 8, 12 trained as one masked width-12 network: each copy's parameters
    equal training its own network alone (float64: measured within 4e-16 relative after 120
    Adam steps, the rounding of sums that add exact zeros; a wrong fan-in scale, e.g. the
    padded width's, is an O(1) error), and the padding stays exactly 0."""
    from scaling import enable_x64

    with enable_x64():
        shape = (30, 5) if kind == "mlp" else (30, 4, 4, 2)
        x = rng.standard_normal((6,) + shape)
        y = np.sin(x.reshape(6, 30, -1)[..., :2])
        widths = [4, 8, 12, 12, 8, 4]
        n_train = [30, 30, 30, 20, 20, 20]
        keys = jax.random.split(jax.random.key(5), 6)
        cfg = experiments.TrainConfig(steps=120, eval_every=40, patience=None, learning_rate=1e-2, batch_size=8,
                                      weight_decay=1e-3)
        wide = experiments.network(kind, width=12, depth=2, out_dim=2, parameterization=parameterization,
                                   activation=activation, width_mask=True)
        res = experiments.train(wide, x, y, x[0, :8], y[0, :8], keys=keys, config=cfg, n_train=n_train, widths=widths)
        for s, w in enumerate(widths):
            own = wide.at_width(w)
            alone = experiments.train(own, x[s:s + 1], y[s:s + 1], x[0, :8], y[0, :8], keys=keys[s:s + 1], config=cfg,
                                      n_train=n_train[s:s + 1])
            mine = jax.tree_util.tree_map(lambda a: a[s:s + 1], res.params)
            shapes = jax.eval_shape(lambda: own.init(jax.random.key(0), (1,) + shape[1:]))
            got = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(experiments.unpad_params(mine, shapes))])
            want = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(alone.params)])
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.max(np.abs(want)))
            np.testing.assert_allclose(res.train_loss[s], alone.train_loss[0], rtol=1e-12)
            everything = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(mine)])
            assert np.count_nonzero(everything) == np.count_nonzero(got)  # the padding is exactly 0
            # predictions of the masked network with this copy's scale are the copy's own network's
            np.testing.assert_array_equal(res.hidden_scale[s], wide.hidden_scale(w))  # the scale it trained with
            out = experiments.predict(wide, mine, x[0, :7], hidden_scale=res.hidden_scale[s:s + 1])
            np.testing.assert_allclose(out, experiments.predict(own, experiments.unpad_params(mine, shapes), x[0, :7]),
                                       rtol=1e-12, atol=1e-12)


def test_a_width_sweep_trains_every_width_in_one_program(monkeypatch):
    """Three widths of an MLP sweep: one training program (the copies padded and masked),
    each cell's width and parameter count its own, and the losses those of the same sweep
    trained one program per width (float32: measured within 2e-7 relative after 200 steps,
    the summation order of padded sums; 1e-5 leaves room for that drift elsewhere, far below
    any real change: a wrong fan-in scale moves losses by tens of percent)."""
    import experiments._networks as networks
    import experiments._units as units

    train = {"steps": 200, "eval_every": 50, "patience": None, "learning_rate": 3e-3, "batch_size": 32}
    spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "mlp", "depth": 2},
                                 grid={"D": [32, 64], "width": [8, 16, 24], "seed": [0, 1]}, n_test=200, train=train)
    before = networks._compiled_fit.cache_info().misses
    ds = experiments.run(spec, progress=False)
    assert networks._compiled_fit.cache_info().misses - before == 1
    buckets = units._width_buckets
    monkeypatch.setattr(units, "_width_buckets", lambda w, c, paddable=True: buckets(w, c, paddable=False))
    before = networks._compiled_fit.cache_info().misses
    each = experiments.run(spec, progress=False)
    assert networks._compiled_fit.cache_info().misses - before == 3
    for w in (8, 16, 24):
        n_params = experiments.network("mlp", width=w, depth=2, out_dim=10).n_params((1, 8, 8, 1))
        assert (ds.width_used.sel(width=w) == w).all() and (ds.n_params.sel(width=w) == n_params).all()
    np.testing.assert_allclose(ds.test_loss.values, each.test_loss.values, rtol=1e-5)
    np.testing.assert_allclose(ds.train_loss.values, each.train_loss.values, rtol=1e-5)


def test_width_mask_errors():
    plain = experiments.network("mlp", width=8, depth=1)
    wide = experiments.network("mlp", width=8, depth=1, width_mask=True)
    x = np.zeros((2, 4, 3), np.float32)
    cfg = experiments.TrainConfig(steps=2, eval_every=1)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="width_mask=True"):
        experiments.train(plain, x, x[..., :1], x[0], x[0, :, :1], keys=keys, config=cfg, widths=[4, 8])
    with pytest.raises(ValueError, match=r"widths must hold 2 integers in \[1, 8\], got \[4, 9\]"):
        experiments.train(wide, x, x[..., :1], x[0], x[0, :, :1], keys=keys, config=cfg, widths=[4, 9])
    with pytest.raises(ValueError, match=r"width must be an integer in \[1, 8\], got 0"):
        wide.hidden_scale(0)
    with pytest.raises(ValueError, match="hidden_scale needs a network built with width_mask=True"):
        plain.apply(plain.init(jax.random.key(0), (1, 3)), x[0], np.ones(8))
    with pytest.raises(ValueError, match="width_mask is for mlp and cnn"):
        experiments.network("wrn", width=1, depth=10, width_mask=True)
    with pytest.raises(ValueError, match="width_mask must be True or False, got 'no'"):
        experiments.network("mlp", width=8, depth=1, width_mask="no")
    with pytest.raises(ValueError, match="hidden_scale is for a network built with width_mask=True"):
        plain.hidden_scale(4)
    params = wide.init(jax.random.key(0), (1, 3))
    for bad in (2.0, np.ones(1), np.ones((4, 8)), np.ones(4)):  # would broadcast, or not: always named
        with pytest.raises(ValueError, match=r"hidden_scale must have shape \(8,\)"):
            wide.apply(params, x[0], bad)
    copies = jax.tree_util.tree_map(lambda a: np.stack([a] * 3), params)
    with pytest.raises(ValueError, match=r"hidden_scale must have shape \(3, 8\)"):
        experiments.predict(wide, copies, x[0], hidden_scale=np.ones((3, 1)))
    narrow = experiments.network("mlp", width=4, depth=1)
    shapes8 = jax.eval_shape(lambda: wide.init(jax.random.key(0), (1, 3)))
    with pytest.raises(ValueError, match="unpad_params: the shapes .* are not one network at two widths"):
        experiments.unpad_params(narrow.init(jax.random.key(1), (1, 3)), shapes8)  # would "unpad" to larger
    other = experiments.network("mlp", width=8, depth=1, out_dim=3, width_mask=True)
    with pytest.raises(ValueError, match="pad_params: the shapes .* are not one network at two widths"):
        experiments.pad_params(narrow.init(jax.random.key(1), (1, 3)),
                               jax.eval_shape(lambda: other.init(jax.random.key(0), (1, 5))))
    cnn = experiments.network("cnn", width=4, depth=1)
    with pytest.raises(ValueError, match="unpad_params: parameters of shapes"):
        experiments.unpad_params(params, jax.eval_shape(lambda: cnn.init(jax.random.key(0), (1, 4, 4, 3))))
