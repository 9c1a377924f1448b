"""The one place that imports neural-tangents; everything else imports ``nt``/``stax`` from here.

neural-tangents 0.6.5, the last release, has two problems on current installs:

* ``import neural_tangents`` eagerly imports ``neural_tangents.experimental``, a TensorFlow
  bridge that pulls in tensorflow + tf2jax (~2.2 GB) and which this toolkit never uses.
  We register a stand-in module under that name first; the toolkit's lock file drops the
  two packages (``[tool.uv] override-dependencies``).
* It imports ``jax.core`` names that jax 0.6 removed. We pin jax < 0.6 and fail with an
  actionable message rather than patching jax's private modules at run time.
"""

from __future__ import annotations

import contextlib
import sys
import types
import warnings

_JAX_MAX = (0, 6)


class _TensorFlowBridgeStandIn(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            # module introspection (getattr(mod, "__file__", None) in pytest plugins, pickle,
            # inspect) must see an ordinary missing attribute, not an error
            raise AttributeError(name)
        raise ImportError(
            f"neural_tangents.experimental.{name} (the TensorFlow bridge) is not available: this toolkit "
            "installs neural-tangents without tensorflow/tf2jax and never uses the bridge"
        )


def _load():
    import jax

    version = tuple(int(p) for p in jax.__version__.split(".")[:2])
    if version >= _JAX_MAX:
        raise ImportError(
            f"neural-tangents 0.6.5 (its last release) does not import on jax {jax.__version__}: it needs "
            "jax < 0.6 (it uses jax.core.Jaxpr and other names removed in 0.6). Use the toolkit's locked "
            "environment (`uv sync`) or `pip install 'jax>=0.5.3,<0.6' 'jaxlib>=0.5.3,<0.6'`."
        )
    if "neural_tangents" not in sys.modules and "neural_tangents.experimental" not in sys.modules:
        stand_in = _TensorFlowBridgeStandIn("neural_tangents.experimental")
        stand_in.__path__ = []  # a package, so submodule lookups fail cleanly
        sys.modules["neural_tangents.experimental"] = stand_in
    with warnings.catch_warnings():
        # neural-tangents 0.6.5 imports jax.core names that jax 0.5 deprecates (and 0.6
        # removes): expected and harmless on the pinned jax, so keep them out of users' logs.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"jax\.core\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"neural_tangents")
        import neural_tangents

    return neural_tangents


@contextlib.contextmanager
def quiet():
    """Silence the deprecation warnings neural-tangents' code raises on jax 0.5 while tracing.

    Only deprecation warnings attributed to neural-tangents' modules are filtered, and
    only inside the block: a user's own warnings are untouched.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"neural_tangents")
        # Raised for every residual block: NT cannot verify that branches are independent.
        # In our blocks each main branch ends in a conv with zero-mean weights, so they are.
        warnings.filterwarnings("ignore", message=r"`FanIn` layers assume independent inputs")
        yield


nt = _load()
stax = nt.stax

# Empirical-NTK implementations that work on jax 0.5.3. STRUCTURED_DERIVATIVES and AUTO
# (the library default) fail inside neural-tangents there (they use removed jax internals).
WORKING_EMPIRICAL_IMPLEMENTATIONS = {
    "jacobian_contraction": nt.NtkImplementation.JACOBIAN_CONTRACTION,
    "ntk_vector_products": nt.NtkImplementation.NTK_VECTOR_PRODUCTS,
}
