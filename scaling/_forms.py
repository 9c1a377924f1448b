"""Scaling-law forms: a JAX law of named parameters plus what the optimiser needs."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._x64 import enable_x64

# jax is imported inside the functions that trace or evaluate a law (not at import):
# ``import scaling`` stays fast, and a law's body runs only when it is fitted.

INF = math.inf

# A start grid entry is either a 1-D array of values or a callable
# ``(x: dict[str, np.ndarray]) -> 1-D array`` for starts that depend on the data range.
Grid = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Form:
    """A scaling law ``y = model(params, x)`` and how to fit it.

    Forms hash by identity, so the same form object reuses compiled fits.

    Parameters
    ----------
    name : str
        Short name used by :func:`scaling.fit` (``fit("offset", ...)``).
    model : callable
        ``model(p, x) -> y``: a JAX function of a mapping of scalar parameters and
        ``x`` (an array for one variable; a mapping ``{"N": ..., "D": ...}`` for several).
    params : tuple of str
        All parameter names, in report order.
    linear : tuple of str
        Parameters the law is linear in (``L_inf``, ``A``, ``E`` ...). For given values
        of the other parameters they are solved in closed form (variable projection).
        Their bounds must be ``(0, inf)`` or ``(-inf, inf)``.
    bounds : mapping
        ``name -> (lo, hi)``; unbounded sides are ``±inf``.
    init : mapping
        ``name -> grid`` of starting values for every nonlinear parameter; a grid may be
        a callable ``x -> values`` (``x`` a dict of variables) when good starts depend on
        the data range.
    variables : tuple of str
        Names of the independent variables (``("x",)``, ``("D",)`` or ``("N", "D")``).
        A one-variable model always receives ``x`` as an array, a several-variable model
        a mapping (see :func:`evaluate`), whatever the variable's name.
    math : str
        The law in LaTeX, for docs and plots.
    text : str
        The law in plain text, for reports (default: derived from ``math``).
    blocks : tuple of tuple of str
        Optional groups of linear parameters whose columns touch disjoint points (e.g. one
        offset per experiment in a shared fit): each block is solved on its own.
    scalable : bool
        The law is homogeneous in its linear parameters (``y -> s y`` is ``c -> s c``), so
        fits run on ``y`` divided by its scale and are unit-free. False e.g. when a linear
        parameter is held at a nonzero value.
    y_scaled_variables : tuple of str
        Variables that carry values in the units of ``y`` (a held linear parameter in a
        profile); rescaled with ``y``.
    origin : tuple
        How a derived form was made from another (set by :meth:`fix` and by profiles, not
        by users): ``("fix", base, ((name, value), ...))`` or ``("profile", base, name)``
        (``name`` read from the variable ``_profile``). Lets the NumPy engine recognise a
        derived power law; ``()`` for a form defined directly.

    Examples
    --------
    A custom form: a power law with an additive constant that may be negative.

    >>> import numpy as np
    >>> from scaling.forms import Form
    >>> shifted = Form(
    ...     name="shifted_power",
    ...     model=lambda p, x: p["c"] + p["A"] * x ** -p["alpha"],
    ...     params=("c", "A", "alpha"),
    ...     linear=("c", "A"),
    ...     bounds={"c": (-np.inf, np.inf), "A": (0, np.inf), "alpha": (0, 4)},
    ...     init={"alpha": np.linspace(0.1, 2, 8)},
    ... )
    >>> shifted.nonlinear
    ('alpha',)
    """

    name: str
    model: Callable[..., Any]
    params: tuple[str, ...]
    linear: tuple[str, ...] = ()
    bounds: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    init: Mapping[str, Grid] = dataclasses.field(default_factory=dict)
    variables: tuple[str, ...] = ("x",)
    math: str = ""
    text: str = ""
    blocks: tuple = ()
    scalable: bool = True
    y_scaled_variables: tuple = ()
    origin: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a Form needs a non-empty str name, got {self.name!r}")
        if not callable(self.model):
            raise TypeError(f"form {self.name!r}: model must be callable, got {type(self.model).__name__}")
        if isinstance(self.params, str) or isinstance(self.variables, str):
            raise TypeError(f"form {self.name!r}: params and variables must be tuples of names, not a str")
        if not self.text:
            object.__setattr__(self, "text", _plain(self.math) if self.math else "")
        params = tuple(self.params)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "linear", tuple(self.linear))
        object.__setattr__(self, "variables", tuple(self.variables))
        if len(set(params)) != len(params):
            raise ValueError(f"form {self.name!r}: duplicate parameter names in {params}")
        unknown = [p for p in self.linear if p not in params]
        if unknown:
            raise ValueError(f"form {self.name!r}: linear parameters {unknown} not in params {params}")
        bounds = {p: tuple(float(v) for v in self.bounds.get(p, (-INF, INF))) for p in params}
        for p, (lo, hi) in bounds.items():
            if not lo < hi:
                raise ValueError(f"form {self.name!r}: bounds of {p!r} must satisfy lo < hi, got {(lo, hi)}")
        for p in self.linear:
            if bounds[p] not in ((0.0, INF), (-INF, INF)):
                raise ValueError(
                    f"form {self.name!r}: linear parameter {p!r} must be bounded by (0, inf) or "
                    f"(-inf, inf), got {bounds[p]}"
                )
        object.__setattr__(self, "bounds", bounds)
        missing = [p for p in self.nonlinear if p not in self.init]
        if missing:
            raise ValueError(f"form {self.name!r}: no start grid (init) for nonlinear parameters {missing}")
        object.__setattr__(self, "init", dict(self.init))

    @functools.cached_property
    def nonlinear(self) -> tuple[str, ...]:
        """Parameters optimised iteratively (everything not linear)."""
        return tuple(p for p in self.params if p not in self.linear)

    def __call__(self, params: Mapping[str, Any], x: Any):
        """Evaluate the law: ``form(params, x)`` (``x`` an array or a mapping of variables)."""
        return evaluate(self, params, x)

    def __repr__(self) -> str:
        return f"Form({self.name!r}, params={self.params}, linear={self.linear})"

    def fix(self, **values: float) -> "Form":
        """The same law with some parameters held at given values.

        Examples
        --------
        >>> from scaling import forms
        >>> forms.offset.fix(alpha=1.0).params
        ('L_inf', 'A')
        """
        return _fixed_form(self, tuple(sorted((k, float(v)) for k, v in values.items())))

    def start_grid(self, x: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The start values of every nonlinear parameter for data at ``x``."""
        grid = {}
        for p in self.nonlinear:
            g = self.init[p]
            values = np.asarray(g(x) if callable(g) else g, dtype=np.float64).ravel()
            lo, hi = self.bounds[p]
            values = values[(values > lo) & (values < hi)]
            if values.size == 0:
                raise ValueError(f"form {self.name!r}: start grid of {p!r} has no value inside bounds {(lo, hi)}")
            grid[p] = values
        return grid


def evaluate(form: Form, params: Mapping[str, Any], x: Any):
    """THE way every part of the package calls a law: fitting, predicting, covariance,
    intervals.

    ``x`` may be a mapping of the form's variables or, for a one-variable form, an array.
    A one-variable model always receives an array (whatever its variable is called); a
    several-variable model always receives a mapping with exactly its variables.

    Examples
    --------
    >>> import numpy as np
    >>> from scaling import forms
    >>> f = forms.Form("d_law", lambda p, x: p["A"] * x ** -p["a"], ("A", "a"), linear=("A",),
    ...                bounds={"A": (0, np.inf), "a": (0, 4)}, init={"a": [0.5]}, variables=("D",))
    >>> float(forms.evaluate(f, {"A": 2.0, "a": 1.0}, {"D": np.array([4.0])})[0])
    0.5
    """
    if len(form.variables) == 1:
        if isinstance(x, Mapping):
            x = x[form.variables[0]]
        return form.model(params, x)
    if not isinstance(x, Mapping):
        raise TypeError(f"form {form.name!r} has variables {form.variables}: x must be a mapping")
    return form.model(params, {v: x[v] for v in form.variables})


def _plain(tex: str) -> str:
    """A LaTeX law in plain text: ``L_\\infty + A\\,x^{-\\alpha}`` -> ``L_inf + A*x^(-alpha)``."""
    import re

    t = tex
    for a, b in ((r"\left", ""), (r"\right", ""), (r"\,", "*"), (r"\infty", "inf"), (r"\prod_i", "prod_i "),
                 (r"\Delta", "d"), (r"\alpha", "alpha"), (r"\beta", "beta"), ("{", "("), ("}", ")")):
        t = t.replace(a, b)
    t = re.sub(r"\\([A-Za-z]+)", r"\1", t)
    return re.sub(r"\s+", " ", t).strip()


@functools.lru_cache(maxsize=256)
def _fixed_form(form: Form, items: tuple[tuple[str, float], ...]) -> Form:
    fixed = dict(items)
    unknown = [k for k in fixed if k not in form.params]
    if unknown:
        raise ValueError(f"cannot fix {unknown}: form {form.name!r} has parameters {form.params}")
    if len(fixed) >= len(form.params):
        raise ValueError(
            f"fixed holds every parameter of form {form.name!r} {form.params}: nothing is left to fit; "
            f"evaluate the law instead, e.g. scaling.forms.get({form.name!r})(params, x)"
        )
    for k, v in fixed.items():
        lo, hi = form.bounds[k]
        if not (lo <= v <= hi) or not math.isfinite(v):
            raise ValueError(f"fixed value {k}={v} is outside the bounds {(lo, hi)} of form {form.name!r}")

    def model(p, x):
        return form.model({**p, **fixed}, x)  # same variables: x passes through unchanged

    suffix = ",".join(f"{k}={v:g}" for k, v in items)
    scalable = form.scalable and not any(k in form.linear and v != 0 for k, v in items)
    return Form(
        name=f"{form.name}[{suffix}]",
        model=model,
        params=tuple(p for p in form.params if p not in fixed),
        linear=tuple(p for p in form.linear if p not in fixed),
        bounds={p: b for p, b in form.bounds.items() if p not in fixed},
        init={p: g for p, g in form.init.items() if p not in fixed},
        variables=form.variables,
        math=form.math,
        text=form.text,
        scalable=scalable,
        origin=("fix", form, items),
    )


_EXPONENT_GRID = np.geomspace(0.02, 3.0, 24)


def _power(p, x):
    return p["A"] * x ** (-p["alpha"])


def _offset(p, x):
    return p["L_inf"] + p["A"] * x ** (-p["alpha"])


def _variance_limited(p, x):
    return p["L_inf"] + p["A"] / x


def _chinchilla(p, x):
    return p["E"] + p["A"] * x["N"] ** (-p["alpha"]) + p["B"] * x["D"] ** (-p["beta"])


def _kaplan(p, x):
    import jax.numpy as jnp

    # [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D, evaluated in log space: the two terms
    # span tens of decades for realistic N_c, D_c.
    a = (p["alpha_N"] / p["alpha_D"]) * (jnp.log(p["N_c"]) - jnp.log(x["N"]))
    b = jnp.log(p["D_c"]) - jnp.log(x["D"])
    return jnp.exp(p["alpha_D"] * jnp.logaddexp(a, b))


power = Form(
    name="power",
    model=_power,
    params=("A", "alpha"),
    linear=("A",),
    bounds={"A": (0, INF), "alpha": (0, 8)},
    init={"alpha": _EXPONENT_GRID},
    math=r"L = A\,x^{-\alpha}",
    text="L = A * x^(-alpha)",
)

offset = Form(
    name="offset",
    model=_offset,
    params=("L_inf", "A", "alpha"),
    linear=("L_inf", "A"),
    bounds={"L_inf": (0, INF), "A": (0, INF), "alpha": (0, 8)},
    init={"alpha": _EXPONENT_GRID},
    math=r"L = L_\infty + A\,x^{-\alpha}",
    text="L = L_inf + A * x^(-alpha)",
)

variance_limited = Form(
    name="variance_limited",
    model=_variance_limited,
    params=("L_inf", "A"),
    linear=("L_inf", "A"),
    bounds={"L_inf": (0, INF), "A": (0, INF)},
    math=r"L = L_\infty + A\,x^{-1}",
    text="L = L_inf + A / x",
)

chinchilla = Form(
    name="chinchilla",
    model=_chinchilla,
    params=("E", "A", "B", "alpha", "beta"),
    linear=("E", "A", "B"),
    bounds={"E": (0, INF), "A": (0, INF), "B": (0, INF), "alpha": (0, 4), "beta": (0, 4)},
    init={"alpha": np.linspace(0.05, 1.5, 12), "beta": np.linspace(0.05, 1.5, 12)},
    variables=("N", "D"),
    math=r"L = E + A\,N^{-\alpha} + B\,D^{-\beta}",
    text="L = E + A * N^(-alpha) + B * D^(-beta)",
)

def _kaplan_scale_grid(name: str):
    # The scale parameters of Kaplan et al. sit many decades above the data
    # (N_c ~ 1e13 for models of 1e9 parameters): search a wide log range.
    def grid(x):
        top = np.log10(np.asarray(x[name], dtype=np.float64).max())
        return np.logspace(top - 1, top + 14, 6)

    return grid


kaplan = Form(
    name="kaplan",
    model=_kaplan,
    params=("N_c", "D_c", "alpha_N", "alpha_D"),
    bounds={"N_c": (0, INF), "D_c": (0, INF), "alpha_N": (0, 4), "alpha_D": (0, 4)},
    init={
        "N_c": _kaplan_scale_grid("N"),
        "D_c": _kaplan_scale_grid("D"),
        "alpha_N": np.array([0.03, 0.08, 0.2, 0.5]),
        "alpha_D": np.array([0.03, 0.08, 0.2, 0.5]),
    },
    variables=("N", "D"),
    math=r"L = \left[(N_c/N)^{\alpha_N/\alpha_D} + D_c/D\right]^{\alpha_D}",
    text="L = ((N_c/N)^(alpha_N/alpha_D) + D_c/D)^alpha_D",
)


def broken(n_breaks: int = 1) -> Form:
    r"""Broken power law (Caballero et al. 2022, BNSL) with ``n_breaks`` breaks.

    .. math::
        L = L_\infty + A\,x^{-\alpha_0}\prod_{i=1}^{n}
            \left(1 + (x/x_i)^{1/f_i}\right)^{-\Delta\alpha_i f_i}

    The exponent is ``alpha_0`` well below the first break ``x_1`` and
    ``alpha_0 + dalpha_1 + ... + dalpha_i`` beyond break ``i``; ``f_i`` sets how sharp
    break ``i`` is.

    Examples
    --------
    >>> from scaling import forms
    >>> forms.broken(2).params
    ('L_inf', 'A', 'alpha_0', 'dalpha_1', 'x_1', 'f_1', 'dalpha_2', 'x_2', 'f_2')
    """
    if not isinstance(n_breaks, (int, np.integer)) or n_breaks < 1:
        raise ValueError(f"n_breaks must be a positive integer, got {n_breaks!r}")
    return _broken(int(n_breaks))


@functools.lru_cache(maxsize=8)
def _broken(n: int) -> Form:
    def model(p, x):
        import jax
        import jax.numpy as jnp

        logx = jnp.log(x)
        log_shape = -p["alpha_0"] * logx
        for i in range(1, n + 1):
            z = (logx - jnp.log(p[f"x_{i}"])) / p[f"f_{i}"]
            log_shape = log_shape - p[f"dalpha_{i}"] * p[f"f_{i}"] * jax.nn.softplus(z)
        return p["L_inf"] + p["A"] * jnp.exp(log_shape)

    params = ["L_inf", "A", "alpha_0"]
    bounds = {"L_inf": (0, INF), "A": (0, INF), "alpha_0": (-2, 8)}
    init: dict[str, Grid] = {"alpha_0": np.array([0.05, 0.3, 1.0])}
    for i in range(1, n + 1):
        params += [f"dalpha_{i}", f"x_{i}", f"f_{i}"]
        bounds |= {f"dalpha_{i}": (-8, 8), f"x_{i}": (0, INF), f"f_{i}": (1e-3, 20)}
        init |= {
            f"dalpha_{i}": np.array([-0.5, 0.3, 1.0]),
            f"x_{i}": _interior_logspace(n_points=4, position=i, n_breaks=n),
            f"f_{i}": np.array([0.3]),
        }
    name = "broken" if n == 1 else f"broken{n}"
    return Form(name=name, model=model, params=tuple(params), linear=("L_inf", "A"), bounds=bounds,
                init=init, math=r"L = L_\infty + A x^{-\alpha_0}\prod_i (1+(x/x_i)^{1/f_i})^{-\Delta\alpha_i f_i}",
                text="L = L_inf + A * x^(-alpha_0) * prod_i (1 + (x/x_i)^(1/f_i))^(-dalpha_i * f_i)")


def _interior_logspace(n_points: int, position: int, n_breaks: int):
    """Break-location starts inside the data range, staggered for several breaks."""

    def grid(x):
        v = np.asarray(next(iter(x.values())), dtype=np.float64)
        lo, hi = np.log10(v.min()), np.log10(v.max())
        edges = np.linspace(lo, hi, n_breaks + 1)
        a, b = edges[position - 1], edges[position]
        return np.logspace(a + 0.1 * (b - a), b - 0.1 * (b - a), n_points)

    return grid


broken_power = broken(1)

_REGISTRY: dict[str, Form] = {}


def register(form: Form, *, overwrite: bool = False, _check: bool = True) -> Form:
    """Make ``form`` addressable by its name in :func:`scaling.fit`.

    The linearity of the parameters declared ``linear`` is checked numerically.

    Examples
    --------
    >>> import numpy as np
    >>> from scaling import forms
    >>> f = forms.Form("log_law", lambda p, x: p["a"] - p["b"] * np.log(x), ("a", "b"),
    ...                linear=("a", "b"), bounds={"a": (-np.inf, np.inf), "b": (-np.inf, np.inf)})
    >>> forms.register(f, overwrite=True) is f
    True
    """
    if not isinstance(form, Form):
        raise TypeError(f"register expects a scaling.forms.Form, got {type(form).__name__}")
    if form.name in _REGISTRY and not overwrite and _REGISTRY[form.name] is not form:
        raise ValueError(f"a form named {form.name!r} is already registered; pass overwrite=True to replace it")
    if _check:
        _check_linearity(form)
    _REGISTRY[form.name] = form
    return form


def get(form: Form | str) -> Form:
    """Resolve a form given by object or by registered name.

    Examples
    --------
    >>> from scaling import forms
    >>> forms.get("offset").params
    ('L_inf', 'A', 'alpha')
    """
    if isinstance(form, Form):
        return form
    if isinstance(form, str):
        if form in _REGISTRY:
            return _REGISTRY[form]
        raise ValueError(f"unknown form {form!r}; expected one of: {', '.join(sorted(_REGISTRY))} or a Form object")
    raise TypeError(f"form must be a name or a scaling.forms.Form, got {type(form).__name__}")


def available() -> tuple[str, ...]:
    """Names of the registered forms."""
    return tuple(sorted(_REGISTRY))


def _check_linearity(form: Form) -> None:
    if not form.linear:
        return
    rng = np.random.default_rng(0)
    xin = {v: rng.uniform(2.0, 50.0, size=7) for v in form.variables}
    base = {}
    for p in form.nonlinear:
        lo, hi = form.bounds[p]
        base[p] = float(np.clip(1.0, lo + 1e-3 if math.isfinite(lo) else -INF, hi - 1e-3 if math.isfinite(hi) else INF))
    c1, c2 = rng.uniform(0.5, 2.0, size=(2, len(form.linear)))
    with enable_x64():
        def f(c):
            return np.asarray(evaluate(form, {**base, **dict(zip(form.linear, c))}, xin), dtype=np.float64)

        zero = f(np.zeros(len(form.linear)))
        lhs = f(c1 + 2.0 * c2)
        rhs = f(c1) + 2.0 * f(c2) - 2.0 * zero
    if np.any(np.abs(zero) > 1e-9 * (1 + np.abs(lhs))) or not np.allclose(lhs, rhs, rtol=1e-8, atol=1e-10):
        raise ValueError(
            f"form {form.name!r}: the model is not linear (without constant term) in the parameters "
            f"declared linear {form.linear}; declare them nonlinear instead"
        )


for _f in (power, offset, variance_limited, broken_power, chinchilla, kaplan):
    register(_f, _check=False)  # built-ins are linear by construction (tested in tests/scaling)
