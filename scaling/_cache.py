"""A persistent JAX compilation cache for fits, on by default, set up at the first fit.

Compiling the batched fitting core takes seconds; the compiled programs depend only on
the form, the objective and a few bucketed shapes, so they are stored on disk and a new
process loads them instead of compiling again.

Fits of the power-sum laws (``power``, ``offset``, ``variance_limited``, ``chinchilla``)
with least-squares objectives run on the NumPy engine (:mod:`scaling._fast`) and compile
nothing; the cache serves every other fit.

What we change, and when (never at ``import scaling``): at the first fit of a process
that needs the compiled core (or the first sweep unit that trains networks or computes
kernels, :mod:`experiments`: their programs take seconds to compile too),
if the user has not configured a cache directory themselves
(``jax.config.jax_compilation_cache_dir`` is unset and ``JAX_COMPILATION_CACHE_DIR`` is
not in the environment), we set ``jax_compilation_cache_dir`` to the user's cache
directory (``$XDG_CACHE_HOME/neural-scaling-theory/jax``, default
``~/.cache/neural-scaling-theory/jax``; ``NST_JAX_CACHE_DIR`` overrides it), and lower
``jax_persistent_cache_min_compile_time_secs`` to 0.2 s so the fitting programs (0.3-3 s
to compile) qualify. JAX has a single process-wide cache, so the user's own programs that
take longer than 0.2 s to compile are then cached too; this is why it is documented and
why ``NST_JAX_CACHE=0`` (or ``off``/``false``) turns it off before the first fit. A cache
directory the user set is respected and left as is.
"""

from __future__ import annotations

import os
from pathlib import Path

_DONE = False
OFF_VALUES = ("0", "off", "false", "no")


def cache_dir() -> Path:
    """Where fits store compiled programs (see the module docstring)."""
    if os.environ.get("NST_JAX_CACHE_DIR"):
        return Path(os.environ["NST_JAX_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "neural-scaling-theory" / "jax"


def ensure_compilation_cache() -> str | None:
    """Turn the persistent cache on once per process; return its directory (None if it is
    off, was already set up by an earlier call, or is the user's own).

    Examples
    --------
    >>> import scaling
    >>> scaling.ensure_compilation_cache() is None or isinstance(scaling.ensure_compilation_cache(), str)
    True
    """
    global _DONE
    if _DONE:
        return None
    _DONE = True
    if os.environ.get("NST_JAX_CACHE", "1").strip().lower() in OFF_VALUES:
        return None
    import jax

    if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return jax.config.jax_compilation_cache_dir  # the user's own choice wins
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home, etc.: fits work, only slower to start
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    if jax.config.jax_persistent_cache_min_compile_time_secs > 0.2:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return str(path)
