"""Teachers on the d-dimensional hypercube that are genuinely d-dimensional.

A network teacher with zero biases (and an NTK with ``b_std = 0``) is positively
1-homogeneous, ``f(c x) = c f(x)``: it is fixed by its values on the sphere ``S^(d-1)``,
so a learning curve on the d-cube measures a ``(d-1)``-dimensional problem. The teachers
here are not: the network teacher has biases (its kinks are hyperplanes ``w.x + b = 0``
that cut the cube anywhere, not only through the origin), and the Gaussian-process teacher
is a smooth function of the cube's coordinates. These are the teacher-student tasks behind
the ``alpha ~ 4/d`` experiment (Bahri et al. 2021, Fig. 1b; ``paper_figs`` Fig. 5).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import numpy as np
import scipy.special

from . import _prng
from ._kinds import Param, TaskKind, register_task
from ._teacher_student import numpy_generator
from ._units import UnitData

TEACHERS = ("relu_network", "erf_network", "gaussian_process")


@dataclasses.dataclass(frozen=True)
class HypercubeTeacher:
    r"""A fixed random teacher ``f: [-1, 1]^d -> R``; build one with :func:`hypercube_teacher`.

    * ``"relu_network"`` / ``"erf_network"``: a fully connected network with ``depth``
      hidden layers of ``width`` units in the standard parameterisation, weights
      ``N(0, 2 / fan_in)`` (readout ``N(0, 1 / fan_in)``) and biases ``N(0, b_std^2)`` in
      every layer: the finite network of :func:`kernels.mlp` with those settings,
      evaluated in numpy float64. ReLU gives a continuous, piecewise-linear target with kinks on
      hyperplanes; erf a smooth (analytic) one built the same way.
    * ``"gaussian_process"``: a draw of the Gaussian process with squared-exponential
      covariance, by ``n_modes`` random Fourier features (Rahimi and Recht 2007),

      .. math::
          f(x) = \sqrt{2/M} \sum_{m=1}^{M} a_m \cos(\omega_m \cdot x + \phi_m),\quad
          a_m \sim N(0, 1),\ \omega_m \sim N(0, (\nu^2/d) I),\ \phi_m \sim U[0, 2\pi),

      whose covariance over teacher draws is exactly
      :math:`E[f(x) f(x')] = \exp(-\nu^2 |x - x'|^2 / (2 d))` for every ``M`` (lengthscale
      ``sqrt(d) / nu`` with ``nu = frequency``: the frequencies have RMS norm ``nu`` for
      every ``d``, as the network teacher's first-layer weights have RMS norm ``sqrt(2)``).
      An infinitely smooth function of the cube's coordinates.
    """

    input_dim: int
    kind: str = "relu_network"
    width: int = 256
    depth: int = 2
    b_std: float = 1.0
    frequency: float = 3.0
    n_modes: int = 2048
    seed: int = 0

    @functools.cached_property
    def _params(self):
        gen = numpy_generator(_prng.fold_in(_prng.key(self.seed), self.input_dim))
        if self.kind == "gaussian_process":
            d, m = self.input_dim, self.n_modes
            omega = gen.standard_normal((m, d)) * (self.frequency / math.sqrt(d))
            phase = gen.uniform(0.0, 2.0 * math.pi, m)
            amp = gen.standard_normal(m) * math.sqrt(2.0 / m)
            return omega, phase, amp
        params, fan_in = [], self.input_dim
        for layer in range(self.depth + 1):
            out, w_std = (self.width, math.sqrt(2.0)) if layer < self.depth else (1, 1.0)
            W = gen.standard_normal((fan_in, out)) * (w_std / math.sqrt(fan_in))
            params.append((W, gen.standard_normal((1, out)) * self.b_std))
            if layer < self.depth:
                params.append(())
            fan_in = out
        return params

    @property
    def parameters(self):
        """The drawn parameters: ``(omega (M, d), phase (M,), amplitude (M,))`` for the
        Gaussian process (amplitudes include ``sqrt(2/M)``); for a network, the layers of
        :func:`kernels.mlp` (``parameterization="standard"``, ``W_std=sqrt(2)``,
        ``W_std_out=1``): a list of ``(W, b)`` per dense layer and ``()`` per activation,
        which that stax network's ``apply_fn`` accepts."""
        return self._params

    def __call__(self, x) -> np.ndarray:
        """Teacher values at ``x (n, d)``, float64 of shape ``(n,)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"x must have shape (n, {self.input_dim}), got {x.shape}")
        out = np.empty(x.shape[0])
        for s in range(0, x.shape[0], 2048):  # bounded (chunk, width) temporaries
            out[s:s + 2048] = self._forward(x[s:s + 2048])
        return out

    def _forward(self, x):
        if self.kind == "gaussian_process":
            omega, phase, amp = self._params
            return np.cos(x @ omega.T + phase) @ amp
        act = (lambda h: np.maximum(h, 0.0)) if self.kind == "relu_network" else scipy.special.erf
        h = x
        for p in self._params:
            h = h @ p[0] + p[1] if p else act(h)
        return h[:, 0]

    def sample(self, key, n: int):
        """``n`` inputs uniform on ``[-1, 1]^d`` (drawn from ``key``) and their teacher values."""
        x = numpy_generator(key).uniform(-1.0, 1.0, (int(n), self.input_dim))
        return x, self(x)


def hypercube_teacher(input_dim: int, kind: str = "relu_network", *, width: int = 256, depth: int = 2,
                      b_std: float = 1.0, frequency: float = 3.0, n_modes: int = 2048,
                      seed: int = 0) -> HypercubeTeacher:
    """A random teacher on the d-cube ``[-1, 1]^d``: a network with biases or a smooth GP draw.

    Parameters
    ----------
    input_dim : int
        The cube's dimension ``d``.
    kind : {"relu_network", "erf_network", "gaussian_process"}
        See :class:`HypercubeTeacher`.
    width, depth : int
        Network teachers: hidden width and number of hidden layers.
    b_std : float
        Network teachers: bias standard deviation (``> 0`` for a d-dimensional teacher;
        ``0`` gives the homogeneous teacher that only sees the sphere).
    frequency : float
        Gaussian-process teacher: RMS norm of its frequencies (lengthscale ``sqrt(d)/frequency``).
    n_modes : int
        Gaussian-process teacher: random Fourier features.
    seed : int
        Seed of the teacher's parameters (folded with ``d``).

    Returns
    -------
    HypercubeTeacher

    Examples
    --------
    >>> import numpy as np, experiments
    >>> t = experiments.hypercube_teacher(3, "relu_network", width=64, b_std=1.0)
    >>> x, y = t.sample(0, 5)
    >>> x.shape, y.shape
    ((5, 3), (5,))
    >>> bool(np.allclose(t(2 * x), 2 * y))  # biases: not 1-homogeneous
    False
    >>> gp = experiments.hypercube_teacher(2, "gaussian_process", n_modes=256)
    >>> bool(np.all(np.isfinite(gp(x[:, :2]))))
    True
    """
    for name, v, lo in (("input_dim", input_dim, 1), ("width", width, 1), ("depth", depth, 1),
                        ("n_modes", n_modes, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if kind not in TEACHERS:
        raise ValueError(f"unknown teacher kind {kind!r}; expected one of: {', '.join(TEACHERS)}")
    if not (isinstance(b_std, (int, float, np.number)) and np.isfinite(b_std) and b_std >= 0):
        raise ValueError(f"b_std must be finite and >= 0, got {b_std!r}")
    if not (isinstance(frequency, (int, float, np.number)) and np.isfinite(frequency) and frequency > 0):
        raise ValueError(f"frequency must be finite and > 0, got {frequency!r}")
    return HypercubeTeacher(int(input_dim), kind, int(width), int(depth), float(b_std), float(frequency),
                            int(n_modes), int(seed))


def _hypercube_data(spec, coords, key, n_pool, *, n_features=None, n_val=0):
    t = spec.params("task", coords)
    teacher = _cached_teacher(t["input_dim"], t["teacher"], t["width"], t["depth"], t["b_std"], t["frequency"],
                              t["n_modes"], t["teacher_seed"])
    k_x, k_e = _prng.split(key)
    n = n_pool + spec.n_test + n_val
    x, y = teacher.sample(k_x, n)
    if t["noise"]:
        y = y + math.sqrt(t["noise"]) * numpy_generator(k_e).standard_normal(n)
    e = n_pool + spec.n_test
    return UnitData(x[:n_pool], y[:n_pool], x[n_pool:e], y[n_pool:e], x_val=x[e:], y_val=y[e:])


@functools.lru_cache(maxsize=32)
def _cached_teacher(*args) -> HypercubeTeacher:
    return hypercube_teacher(*args[:2], width=args[2], depth=args[3], b_std=args[4], frequency=args[5],
                             n_modes=args[6], seed=args[7])


HYPERCUBE_TASK = register_task(TaskKind("hypercube_teacher", {
    "input_dim": Param(int, 4, "the cube's dimension d"),
    "teacher": Param(str, "relu_network", "teacher function", choices=TEACHERS),
    "width": Param(int, 256, "network teachers: hidden width"),
    "depth": Param(int, 2, "network teachers: hidden layers"),
    "b_std": Param(float, 1.0, "network teachers: bias standard deviation (> 0: not homogeneous)"),
    "frequency": Param(float, 3.0, "Gaussian-process teacher: RMS frequency norm (lengthscale sqrt(d)/frequency)"),
    "n_modes": Param(int, 2048, "Gaussian-process teacher: random Fourier features"),
    "noise": Param(float, 0.0, "label-noise variance (grid dim noise overrides it)"),
    "teacher_seed": Param(int, 0, "seed of the teacher's parameters (shared by every cell)"),
}, _hypercube_data, grid_dims=frozenset({"noise"}),
    doc="a teacher with biases (ReLU or erf network) or a smooth Gaussian-process draw on [-1, 1]^d"), overwrite=True)
