"""Finite-width networks trained with optax, many seeds at once under vmap."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

import kernels
from kernels import stax

KINDS = ("mlp", "cnn", "wrn")


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A network as ``readout(body(x))``: ``body`` maps inputs to features, ``readout`` is linear.

    Use :func:`network` to build one. Parameters are ``(body_params, readout_params)``.
    """

    kind: str
    width: int
    depth: int
    out_dim: int
    parameterization: str
    body: tuple
    readout: tuple

    @functools.cached_property
    def _full(self):
        return stax.serial(self.body, self.readout)

    def init(self, key, input_shape):
        """Parameters for inputs of ``input_shape`` (batch axis first, any size)."""
        key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
        _, params = self._full[0](key, tuple(input_shape))
        return params

    def apply(self, params, x):
        return self._full[1](params, x)

    def features(self, params, x):
        """The body's output: the network's last hidden representation."""
        return self.body[1](params[0], x)

    def n_params(self, input_shape) -> int:
        shapes = jax.eval_shape(lambda: self.init(jax.random.key(0), input_shape))
        return int(sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes)))


def network(kind: str, *, width: int, depth: int, out_dim: int = 1, parameterization: str = "standard",
            activation: str = "relu") -> Network:
    """A fully connected (``"mlp"``), convolutional (``"cnn"``) or wide-residual (``"wrn"``) network.

    ``width`` is the hidden width (MLP), the channel count (CNN) or the width multiplier
    (WRN, ``depth = 6n + 4``). MLPs flatten their inputs first.

    Examples
    --------
    >>> import experiments
    >>> net = experiments.network("mlp", width=32, depth=2, out_dim=10)
    >>> net.n_params((1, 64))
    3456
    """
    if kind not in KINDS:
        raise ValueError(f"unknown network kind {kind!r}; expected one of: {', '.join(KINDS)}")
    for name, v in (("width", width), ("depth", depth), ("out_dim", out_dim)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    width, depth, out_dim = int(width), int(depth), int(out_dim)
    if kind == "mlp":
        body = stax.serial(stax.Flatten(), kernels.mlp(depth, width=width, activation=activation,
                                                       parameterization=parameterization, readout=False))
    elif kind == "cnn":
        body = kernels.cnn(depth, channels=width, activation=activation, parameterization=parameterization,
                           readout=False)
    else:
        body = kernels.wide_resnet(depth, width_multiplier=width, readout=False)
    readout = stax.Dense(out_dim, W_std=1.0, parameterization=parameterization)
    return Network(kind, width, depth, out_dim, parameterization, body, readout)


def width_for_parameters(kind: str, depth: int, n_params: int, input_shape, *, out_dim: int = 1, **kwargs) -> int:
    """The width whose network has the parameter count closest to ``n_params``.

    For aspect-ratio studies: networks of different depth at (nearly) equal size.

    Examples
    --------
    >>> import experiments
    >>> w = experiments.width_for_parameters("mlp", 3, 20_000, (1, 64), out_dim=10)
    >>> abs(experiments.network("mlp", width=w, depth=3, out_dim=10).n_params((1, 64)) - 20_000) < 500
    True
    """
    def count(w):
        return network(kind, width=w, depth=depth, out_dim=out_dim, **kwargs).n_params(input_shape)

    lo, hi = 1, 2
    while count(hi) < n_params:
        lo, hi = hi, hi * 2
        if hi > 1 << 20:
            raise ValueError(f"no width reaches {n_params} parameters")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < n_params else (lo, mid)
    return lo if abs(count(lo) - n_params) <= abs(count(hi) - n_params) else hi


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How networks are trained.

    Attributes
    ----------
    loss : {"mse", "cross_entropy"}
        MSE on (centred one-hot or real) targets, summed over outputs, mean over points.
    optimizer : {"adam", "sgd", "momentum"}
    learning_rate : float
    schedule : {"constant", "cosine", "warmup_cosine"}
        Cosine decay to 0 over ``steps`` (the paper's WRN recipe), optionally after a 5%
        linear warm-up.
    steps : int
        Maximum optimisation steps.
    batch_size : int, optional
        Minibatch size; None trains full-batch (small D).
    eval_every : int
        Steps between validation checks.
    patience : int, optional
        Early stopping: stop a seed after this many checks without a better validation loss
        (the best parameters are kept). None trains for all ``steps``.
    weight_decay : float
    """

    loss: str = "mse"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    steps: int = 2000
    batch_size: int | None = None
    eval_every: int = 100
    patience: int | None = 5
    weight_decay: float = 0.0

    def __post_init__(self):
        for name, allowed in (("loss", ("mse", "cross_entropy")), ("optimizer", ("adam", "sgd", "momentum")),
                              ("schedule", ("constant", "cosine", "warmup_cosine"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of: {', '.join(allowed)}")
        if not (self.learning_rate > 0 and self.steps >= 1 and self.eval_every >= 1):
            raise ValueError("learning_rate must be > 0, steps and eval_every >= 1")

    def optax_optimizer(self):
        if self.schedule == "constant":
            lr = self.learning_rate
        elif self.schedule == "cosine":
            lr = optax.cosine_decay_schedule(self.learning_rate, self.steps)
        else:
            lr = optax.warmup_cosine_decay_schedule(0.0, self.learning_rate, max(1, self.steps // 20), self.steps)
        base = {"adam": optax.adam, "sgd": optax.sgd, "momentum": lambda lr: optax.sgd(lr, momentum=0.9)}[
            self.optimizer](lr)
        return optax.chain(optax.add_decayed_weights(self.weight_decay), base) if self.weight_decay else base


def _loss(config: TrainConfig, logits, y):
    """Per-example loss; ``y`` is targets (mse) or integer labels (cross-entropy)."""
    if config.loss == "mse":
        return jnp.sum((logits - y) ** 2, axis=-1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


class TrainResult:
    """Best parameters (stacked over seeds) and the training record."""

    def __init__(self, params, steps, best_val, train_loss, converged, history):
        self.params = params
        self.steps = steps  # (S,) steps actually run
        self.best_val = best_val  # (S,)
        self.train_loss = train_loss  # (S,) at the best parameters
        self.converged = converged  # (S,) stopped early, or the validation loss had plateaued
        self.history = history  # (checks, S) validation loss at every check


def train(net: Network, x, y, x_val, y_val, *, keys, config: TrainConfig) -> TrainResult:
    """Train ``S`` copies of ``net`` at once (vmapped over seeds).

    Parameters
    ----------
    x : array (S, D, ...)
        Each seed's training inputs (same ``D`` for every seed).
    y : array (S, D, c) targets, or (S, D) integer labels for cross-entropy
    x_val, y_val : arrays (V, ...), shared validation set for early stopping
    keys : array of S JAX keys (initialisation and minibatch order)
    config : TrainConfig
    """
    S, D = x.shape[0], x.shape[1]
    opt = config.optax_optimizer()
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    params = jax.vmap(lambda k: net.init(k, (1,) + x.shape[2:]))(init_keys)
    opt_state = jax.vmap(opt.init)(params)
    bs = D if config.batch_size is None or config.batch_size >= D else int(config.batch_size)

    def loss_fn(p, xb, yb):
        return jnp.mean(_loss(config, net.apply(p, xb), yb))

    def one_seed_chunk(p, s, k, xs, ys):
        def body(carry, _):
            p, s, k = carry
            k, sub = jax.random.split(k)
            idx = jax.random.choice(sub, D, (bs,), replace=False) if bs < D else jnp.arange(D)
            g = jax.grad(loss_fn)(p, xs[idx], ys[idx])
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s, k), None

        (p, s, k), _ = jax.lax.scan(body, (p, s, k), None, length=config.eval_every)
        return p, s, k

    chunk = jax.jit(jax.vmap(one_seed_chunk))
    evaluate = jax.jit(jax.vmap(loss_fn, in_axes=(0, None, None)))
    train_eval = jax.jit(jax.vmap(loss_fn))
    data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    best = params
    best_val = np.full(S, np.inf)
    waited = np.zeros(S, dtype=int)
    steps = np.zeros(S, dtype=int)
    active = np.ones(S, dtype=bool)
    n_chunks = max(1, config.steps // config.eval_every)
    history = []
    for _ in range(n_chunks):
        params, opt_state, data_keys = chunk(params, opt_state, data_keys, x, y)
        steps[active] += config.eval_every
        val = np.asarray(evaluate(params, x_val, y_val))
        history.append(np.where(active, val, np.nan))
        improved = active & (val < best_val)
        best = jax.tree_util.tree_map(lambda b, p: jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b),
                                      best, params)
        best_val = np.where(improved, val, best_val)
        waited = np.where(improved, 0, waited + active)
        if config.patience is not None:
            active &= waited < config.patience
            if not active.any():
                break
    train_loss = np.asarray(train_eval(best, x, y))
    hist = np.asarray(history)
    # Converged: stopped early, or the best validation loss improved by less than 1% over
    # the last fifth of the checks (e.g. a cosine schedule that has annealed to zero).
    tail = max(1, len(hist) // 5)
    best_so_far = np.fmin.accumulate(np.where(np.isnan(hist), np.inf, hist), axis=0)
    plateau = best_so_far[-1] >= 0.99 * best_so_far[-1 - tail] if len(hist) > tail else np.zeros(S, bool)
    stopped = ~active if config.patience is not None else np.zeros(S, bool)
    return TrainResult(best, steps, best_val, train_loss, stopped | plateau, hist)


def predict(net: Network, params, x, *, batch_size: int = 2048):
    """Outputs of every seed's network on shared inputs ``x``: array (S, n, out_dim)."""
    f = jax.jit(jax.vmap(net.apply, in_axes=(0, None)))
    return np.concatenate([np.asarray(f(params, x[i:i + batch_size])) for i in range(0, x.shape[0], batch_size)],
                          axis=1)
