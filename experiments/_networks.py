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
    activation: str = "relu"
    width_mask: bool = False

    @functools.cached_property
    def _full(self):
        return stax.serial(self.body, self.readout)

    def init(self, key, input_shape):
        """Parameters for inputs of ``input_shape`` (batch axis first, any size)."""
        key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
        _, params = self._full[0](key, tuple(input_shape))
        return params

    def apply(self, params, x, hidden_scale=None):
        """Outputs on ``x``; ``hidden_scale`` (a network built with ``width_mask``) scales every
        hidden unit (see :meth:`hidden_scale`)."""
        if hidden_scale is None:
            return self._full[1](params, x)
        return self._full[1](params, x, hidden_scale=self._check_scale(hidden_scale))

    def _check_scale(self, hidden_scale):
        if not self.width_mask:
            raise ValueError("hidden_scale needs a network built with width_mask=True")
        if jnp.shape(hidden_scale) != (self.width,):
            raise ValueError(f"hidden_scale must have shape ({self.width},) (one entry per hidden unit), "
                             f"got shape {jnp.shape(hidden_scale)}")
        return hidden_scale

    def at_width(self, width: int, *, width_mask: bool = False) -> "Network":
        """The same architecture at another width."""
        return network(self.kind, width=width, depth=self.depth, out_dim=self.out_dim,
                       parameterization=self.parameterization, activation=self.activation, width_mask=width_mask)

    def hidden_scale(self, width: int) -> np.ndarray:
        """The ``hidden_scale`` that makes this (masked) network compute the network of
        ``width``: units past ``width`` are 0, the others 1, or ``sqrt(self.width / width)``
        in the NTK parameterisation, whose layers scale by ``1/sqrt(fan-in)`` of the padded
        width (so the product is ``1/sqrt(fan-in)`` of the true one).

        With parameters that are the ``width`` network's, zero-padded (:func:`pad_params`),
        outputs and gradients are that network's and the padding's gradients are exactly 0.

        Examples
        --------
        >>> import experiments
        >>> net = experiments.network("mlp", width=4, depth=1, parameterization="ntk", width_mask=True)
        >>> net.hidden_scale(1).tolist()
        [2.0, 0.0, 0.0, 0.0]
        """
        if not self.width_mask:
            raise ValueError("hidden_scale is for a network built with width_mask=True")
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or not 1 <= width <= self.width:
            raise ValueError(f"width must be an integer in [1, {self.width}], got {width!r}")
        value = math.sqrt(self.width / int(width)) if self.parameterization == "ntk" else 1.0
        return np.where(np.arange(self.width) < int(width), value, 0.0)

    def features(self, params, x, hidden_scale=None):
        """The body's output: the network's last hidden representation (``hidden_scale``: as
        in :meth:`apply`)."""
        if hidden_scale is None:
            return self.body[1](params[0], x)
        return self.body[1](params[0], x, hidden_scale=self._check_scale(hidden_scale))

    def n_params(self, input_shape) -> int:
        shapes = jax.eval_shape(lambda: self.init(jax.random.key(0), input_shape))
        return int(sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes)))


@functools.lru_cache(maxsize=256)
def network(kind: str, *, width: int, depth: int, out_dim: int = 1, parameterization: str = "standard",
            activation: str = "relu", width_mask: bool = False) -> Network:
    """A fully connected (``"mlp"``), convolutional (``"cnn"``) or wide-residual (``"wrn"``) network.

    ``width`` is the hidden width (MLP), the channel count (CNN) or the width multiplier
    (WRN, ``depth = 6n + 4``). MLPs flatten their inputs first. ``width_mask`` (MLP, CNN)
    builds the network to train narrower ones as its padded copies (:meth:`Network.hidden_scale`).

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
    if not isinstance(width_mask, (bool, np.bool_)):
        raise ValueError(f"width_mask must be True or False, got {width_mask!r}")
    width_mask = bool(width_mask)
    if kind == "mlp":
        body = stax.serial(stax.Flatten(), kernels.mlp(depth, width=width, activation=activation,
                                                       parameterization=parameterization, readout=False,
                                                       width_mask=width_mask))
    elif kind == "cnn":
        body = kernels.cnn(depth, channels=width, activation=activation, parameterization=parameterization,
                           readout=False, width_mask=width_mask)
    else:
        if width_mask:
            raise ValueError("width_mask is for mlp and cnn networks (a wide ResNet's widths are not padded)")
        body = kernels.wide_resnet(depth, width_multiplier=width, readout=False)
    readout = stax.Dense(out_dim, W_std=1.0, parameterization=parameterization)
    return Network(kind, width, depth, out_dim, parameterization, body, readout, activation, width_mask)


def _check_widths(small, large, what):
    """``small`` and ``large``: lists of per-leaf shapes (copy axes removed). Raises unless they
    are one architecture at two widths: same ranks, and every axis that differs goes from one
    width ``w`` to one width ``W >= w``."""
    if len(small) != len(large):
        raise ValueError(f"{what}: parameters with {len(small)} arrays do not fit a network with {len(large)}")
    grown = set()
    for a, b in zip(small, large):
        if len(a) != len(b):
            raise ValueError(f"{what}: a parameter of shape {a} does not fit one of shape {b}")
        grown |= {(n, m) for n, m in zip(a, b) if n != m}
    if len(grown) > 1 or any(n > m for n, m in grown):
        raise ValueError(f"{what}: the shapes {small} and {large} are not one network at two widths "
                         f"(axes go {sorted(grown)})")


def _aligned(params, shapes, what, *, grows):
    """``params``' leaves, ``shapes``' leaves and tree, and the number of leading copy axes of
    ``params``, checked to be one architecture at two widths (``params`` the narrower when
    ``grows``)."""
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    mine = jax.tree_util.tree_leaves(params)
    lead = [np.ndim(a) - len(t.shape) for a, t in zip(mine, leaves)]
    if any(n < 0 for n in lead) or len(set(lead)) > 1:
        raise ValueError(f"{what}: parameters of shapes {[np.shape(a) for a in mine]} do not fit "
                         f"{[tuple(t.shape) for t in leaves]}")
    own = [tuple(np.shape(a)[k:]) for a, k in zip(mine, lead)]
    other = [tuple(t.shape) for t in leaves]
    small, large = (own, other) if grows else (other, own)
    _check_widths(small, large, what)
    return mine, leaves, treedef, lead


def pad_params(params, shapes):
    """Zero-pad every leaf of ``params`` (a narrower network's, any leading copy axes) at the
    end of each axis to the matching leaf of ``shapes`` (the wider network's parameters or
    their shapes, without the copy axes). Only the width may differ.

    Examples
    --------
    >>> import jax, experiments
    >>> narrow = experiments.network("mlp", width=2, depth=1)
    >>> wide = experiments.network("mlp", width=4, depth=1, width_mask=True)
    >>> p = experiments.pad_params(narrow.init(0, (1, 3)), jax.eval_shape(lambda: wide.init(0, (1, 3))))
    >>> [tuple(a.shape) for a in jax.tree_util.tree_leaves(p)]
    [(3, 4), (1, 4), (4, 1)]
    """
    mine, leaves, treedef, lead = _aligned(params, shapes, "pad_params", grows=True)
    # in numpy: an XLA pad would compile once per shape, far longer than it runs
    out = [np.pad(np.asarray(a), [(0, 0)] * k + [(0, m - n) for n, m in zip(np.shape(a)[k:], t.shape)])
           for a, t, k in zip(mine, leaves, lead)]
    return jax.tree_util.tree_unflatten(treedef, out)


def unpad_params(params, shapes):
    """The leading blocks of ``params``' leaves (a padded network's, any leading copy axes) of
    the shapes of ``shapes``' leaves (the narrower network's): the inverse of :func:`pad_params`."""
    mine, leaves, treedef, lead = _aligned(params, shapes, "unpad_params", grows=False)
    out = [np.asarray(a)[(slice(None),) * k + tuple(slice(0, n) for n in t.shape)]  # numpy: see pad_params
           for a, t, k in zip(mine, leaves, lead)]
    return jax.tree_util.tree_unflatten(treedef, out)


@functools.lru_cache(maxsize=64)
def _batched_apply(net: Network):
    return jax.jit(jax.vmap(net.apply, in_axes=(0, None)))


@functools.lru_cache(maxsize=64)
def _batched_scaled_apply(net: Network):
    return jax.jit(jax.vmap(net.apply, in_axes=(0, None, 0)))


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
    args = (kind, int(depth), int(n_params), tuple(int(s) for s in input_shape), int(out_dim),
            tuple(sorted(kwargs.items())))
    try:
        hash(args)
    except TypeError:  # an unhashable option (a list...): search without the memo
        return _width_for_parameters.__wrapped__(*args)
    return _width_for_parameters(*args)


@functools.lru_cache(maxsize=256)
def _width_for_parameters(kind, depth, n_params, input_shape, out_dim, kwargs) -> int:
    """The binary search behind :func:`width_for_parameters`, memoised: each step traces the
    network's ``init`` (``jax.eval_shape``), and a sweep asks the same question once per cell."""
    kwargs = dict(kwargs)

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

    def __init__(self, params, steps, best_val, train_loss, converged, history, hidden_scale=None):
        self.params = params
        self.hidden_scale = hidden_scale  # (S, width) for copies of several widths (train's widths), else None
        self.steps = steps  # (S,) steps actually run
        self.best_val = best_val  # (S,)
        self.train_loss = train_loss  # (S,) at the best parameters
        self.converged = converged  # (S,) stopped early, or the validation loss had plateaued
        self.history = history  # (checks, S) validation loss at every check


def train(net: Network, x, y, x_val, y_val, *, keys, config: TrainConfig, n_train=None, widths=None) -> TrainResult:
    """Train ``S`` copies of ``net`` at once: one device program, vmapped over copies.

    The whole loop runs on the device (``lax.while_loop`` over checks of
    ``config.eval_every`` scanned steps), early stopping included: nothing comes back to
    Python until every copy has stopped or ``config.steps`` are done. With several local
    devices the copies are sharded across them (``jax.sharding``).

    Parameters
    ----------
    x : array (S, D, ...)
        Each copy's training inputs, padded to a common ``D`` where ``n_train`` says so.
    y : array (S, D, c) targets, or (S, D) integer labels for cross-entropy
    x_val, y_val : arrays (V, ...), shared validation set for early stopping
    keys : array of S JAX keys (initialisation and minibatch order)
    config : TrainConfig
    n_train : int array (S,), optional
        Training points of each copy: rows ``n_train[s]:`` of ``x[s]`` are padding and
        never seen (losses are means over the real rows). Default: all ``D``.
    widths : int array (S,), optional
        Each copy's own width, for ``net`` built with ``width_mask=True`` at the largest: copy
        ``s`` starts from the parameters ``net.at_width(widths[s]).init`` draws, zero-padded,
        and trains as that network (:meth:`Network.hidden_scale`; the padding stays exactly
        0). Its parameters come back padded: :func:`unpad_params` takes them out, or
        ``predict(net, result.params, x, hidden_scale=result.hidden_scale)`` uses them as they are.

    Returns
    -------
    TrainResult
        Best parameters (stacked over copies), steps run, best validation loss, training
        loss at the best parameters, convergence flags and the validation history.

    Examples
    --------
    >>> import jax, numpy as np, experiments
    >>> net = experiments.network("mlp", width=16, depth=1)
    >>> x = np.random.default_rng(0).standard_normal((2, 32, 3)).astype(np.float32)
    >>> y = x[..., :1] ** 2
    >>> res = experiments.train(net, x, y, x[0], y[0], keys=jax.random.split(jax.random.key(0), 2),
    ...                         config=experiments.TrainConfig(steps=200, eval_every=50, learning_rate=1e-2),
    ...                         n_train=[32, 20])
    >>> res.steps.tolist(), bool(np.all(res.train_loss < 0.5 * y.var()))
    ([200, 200], True)
    """
    return _launch_training(net, x, y, x_val, y_val, keys=keys, config=config, n_train=n_train, widths=widths)()


def _launch_training(net: Network, x, y, x_val, y_val, *, keys, config: TrainConfig, n_train=None, widths=None):
    """Dispatch :func:`train`'s device program and return, without waiting for it, a function
    that collects its :class:`TrainResult` (so several programs can be in flight at once)."""
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    S, D = x.shape[0], x.shape[1]
    n = np.full(S, D, dtype=np.int32) if n_train is None else np.asarray(n_train, dtype=np.int32).reshape(-1)
    if n.shape != (S,) or np.any(n < 1) or np.any(n > D):
        raise ValueError(f"n_train must hold {S} integers in [1, {D}], got {n_train!r}")
    bs = D if config.batch_size is None or config.batch_size >= D else int(config.batch_size)
    n_chunks = max(1, config.steps // config.eval_every)
    fit = _compiled_fit(net, config, bs, n_chunks)
    # initialisation runs eagerly: compiling it inside the training program costs more
    # than running it
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    in_shape = (1,) + x.shape[2:]
    if widths is None:
        params = jax.vmap(lambda k: net.init(k, in_shape))(init_keys)
        scale = None
    else:
        params, scale = _padded_init(net, init_keys, widths, in_shape, S)
    args = (params, keys, x, y, jnp.asarray(n), scale, jnp.asarray(x_val), jnp.asarray(y_val))
    args, pad = _shard_cells(args, S)
    out = fit(*args)  # dispatched asynchronously
    return functools.partial(_collect, out, S, pad, config, scale)


def _padded_init(net: Network, init_keys, widths, in_shape, S):
    """Every copy's initial parameters at its own width, zero-padded to ``net``'s, and the
    copies' ``hidden_scale`` rows."""
    if not net.width_mask:
        raise ValueError("widths needs a network built with width_mask=True (the widest of them)")
    w = np.asarray(widths).reshape(-1)
    if w.shape != (S,) or not np.issubdtype(w.dtype, np.integer) or np.any(w < 1) or np.any(w > net.width):
        raise ValueError(f"widths must hold {S} integers in [1, {net.width}], got {widths!r}")
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), in_shape))
    parts, order = [], []
    for width in np.unique(w):
        idx = np.nonzero(w == width)[0]
        narrow = net.at_width(int(width))
        own = jax.vmap(lambda k: narrow.init(k, in_shape))(init_keys if len(idx) == S else init_keys[idx])
        parts.append(pad_params(own, shapes))
        order.extend(idx.tolist())
    where = np.argsort(np.asarray(order))  # copy s is row where[s] of the concatenation
    params = jax.tree_util.tree_map(lambda *a: np.concatenate(a)[where], *parts)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype  # the scale rounded once, to the parameters' precision
    scale = jnp.asarray(np.stack([net.hidden_scale(int(width)) for width in w]).astype(dtype))
    return params, scale


def _collect(out, S, pad, config, scale=None) -> TrainResult:
    params, steps, best_val, train_loss, history, n_run, active = out
    if pad:
        params = jax.tree_util.tree_map(lambda a: a[:S], params)
    steps, best_val, train_loss, active = (np.asarray(a)[:S] for a in (steps, best_val, train_loss, active))
    hist = np.asarray(history)[: int(n_run), :S]
    # Converged: stopped early, or the best validation loss improved by less than 1% over
    # the last fifth of the checks (e.g. a cosine schedule that has annealed to zero).
    tail = max(1, len(hist) // 5)
    best_so_far = np.fmin.accumulate(np.where(np.isnan(hist), np.inf, hist), axis=0)
    plateau = best_so_far[-1] >= 0.99 * best_so_far[-1 - tail] if len(hist) > tail else np.zeros(S, bool)
    stopped = ~active if config.patience is not None else np.zeros(S, bool)
    return TrainResult(params, steps.astype(int), best_val, train_loss, stopped | plateau, hist,
                       None if scale is None else np.asarray(scale))


def _shard_cells(args, S):
    """Spread the copies (axis 0 of every array in ``args`` but the shared validation set)
    over the local devices, padding their number to a multiple of the device count."""
    devices = jax.local_devices()
    if len(devices) < 2 or S < 2:
        return args, 0
    pad = (-S) % len(devices)
    cells, shared = args[:6], args[6:]
    if pad:
        cells = tuple(jax.tree_util.tree_map(lambda a: jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]), c)
                      for c in cells)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("cells",))
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("cells"))
    same = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return tuple(jax.device_put(c, split) for c in cells) + tuple(jax.device_put(a, same) for a in shared), pad


@functools.lru_cache(maxsize=64)
def _compiled_fit(net: Network, config: TrainConfig, bs: int, n_chunks: int):
    opt = config.optax_optimizer()
    patience = config.patience

    def weighted_loss(p, xb, yb, wb, sc):
        per = _loss(config, net.apply(p, xb, sc), yb)
        return jnp.sum(wb * per) / jnp.maximum(jnp.sum(wb), 1.0)

    def val_loss(p, sc, xv, yv):
        return jnp.mean(_loss(config, net.apply(p, xv, sc), yv))

    def one_step(carry, _, xs, ys, ns, sc):
        p, s, k = carry
        k, sub = jax.random.split(k)
        rows = jnp.arange(xs.shape[0])
        if bs < xs.shape[0]:
            # a random subset of the real rows, without replacement (all of them, first,
            # when a copy has fewer than bs): padding sorts last and is weighted 0
            # (top_k of -u: the same rows in the same order as argsort(u)[:bs], ties to the lower
            # index, without sorting all the rows: 5.7x cheaper per step at 800 rows)
            u = jnp.where(rows < ns, jax.random.uniform(sub, rows.shape), 2.0)
            idx = jax.lax.top_k(-u, bs)[1]
        else:
            idx = rows
        wb = (idx < ns).astype(xs.dtype)
        g = jax.grad(weighted_loss)(p, xs[idx], ys[idx], wb, sc)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s, k), None

    def chunk(p, s, k, xs, ys, ns, sc):
        (p, s, k), _ = jax.lax.scan(functools.partial(one_step, xs=xs, ys=ys, ns=ns, sc=sc), (p, s, k), None,
                                    length=config.eval_every)
        return p, s, k

    def fit(params, keys, x, y, n, scale, x_val, y_val):
        S = x.shape[0]
        opt_state = jax.vmap(opt.init)(params)
        data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        state = dict(params=params, opt=opt_state, keys=data_keys, best=params,
                     best_val=jnp.full(S, jnp.inf, jnp.float32), waited=jnp.zeros(S, jnp.int32),
                     steps=jnp.zeros(S, jnp.int32), active=jnp.ones(S, bool),
                     history=jnp.full((n_chunks, S), jnp.nan, jnp.float32), i=jnp.int32(0))

        def cond(st):
            go = st["i"] < n_chunks
            return go & jnp.any(st["active"]) if patience is not None else go

        def body(st):
            p, s, k = jax.vmap(chunk)(st["params"], st["opt"], st["keys"], x, y, n, scale)
            active = st["active"]
            steps = st["steps"] + config.eval_every * active.astype(jnp.int32)
            val = jax.vmap(val_loss, in_axes=(0, 0, None, None))(p, scale, x_val, y_val).astype(jnp.float32)
            history = st["history"].at[st["i"]].set(jnp.where(active, val, jnp.nan))
            improved = active & (val < st["best_val"])
            best = jax.tree_util.tree_map(
                lambda b, q: jnp.where(improved.reshape((-1,) + (1,) * (q.ndim - 1)), q, b), st["best"], p)
            best_val = jnp.where(improved, val, st["best_val"])
            waited = jnp.where(improved, 0, st["waited"] + active.astype(jnp.int32))
            if patience is not None:
                active = active & (waited < patience)
            return dict(params=p, opt=s, keys=k, best=best, best_val=best_val, waited=waited, steps=steps,
                        active=active, history=history, i=st["i"] + 1)

        st = jax.lax.while_loop(cond, body, state)
        mask = (jnp.arange(x.shape[1])[None, :] < n[:, None]).astype(x.dtype)
        train_loss = jax.vmap(weighted_loss)(st["best"], x, y, mask, scale)
        return st["best"], st["steps"], st["best_val"], train_loss, st["history"], st["i"], st["active"]

    return jax.jit(fit)


def predict(net: Network, params, x, *, batch_size: int = 2048, hidden_scale=None):
    """Outputs of every seed's network on shared inputs ``x``: array (S, n, out_dim).

    ``hidden_scale`` (S, width): each copy's :meth:`Network.hidden_scale`, for copies of
    several widths trained padded in one masked network (:func:`train` with ``widths``).

    Examples
    --------
    >>> import jax, numpy as np, experiments
    >>> net = experiments.network("mlp", width=8, depth=1, out_dim=2)
    >>> params = jax.vmap(lambda k: net.init(k, (1, 3)))(jax.random.split(jax.random.key(0), 4))
    >>> experiments.predict(net, params, np.ones((5, 3))).shape
    (4, 5, 2)
    """
    if hidden_scale is None:
        f, extra = _batched_apply(net), ()
    else:
        S = jax.tree_util.tree_leaves(params)[0].shape[0]
        if np.shape(hidden_scale) != (S, net.width):
            raise ValueError(f"hidden_scale must have shape ({S}, {net.width}) (a row per copy), "
                             f"got shape {np.shape(hidden_scale)}")
        f, extra = _batched_scaled_apply(net), (hidden_scale,)
    return np.concatenate([np.asarray(f(params, x[i:i + batch_size], *extra)) for i in range(0, x.shape[0], batch_size)],
                          axis=1)
