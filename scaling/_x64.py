"""Scoped float64: the one helper every package uses to compute in double precision.

JAX keeps float32 unless ``jax_enable_x64`` is set. The toolkit never flips that flag
globally (importing a library must not change a user's numerics); fits, spectra and theory
curves run inside :func:`enable_x64` instead. jax 0.7 and newer expose the scoped switch as
``jax.enable_x64`` (a config state usable as a context manager); older releases had
``jax.experimental.enable_x64``, which jax 0.9 removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def enable_x64(enabled: bool = True) -> Iterator[None]:
    """Run a block with JAX's 64-bit types on (or off), restoring the previous state after.

    Parameters
    ----------
    enabled : bool
        ``True`` (default) computes in float64 inside the block; ``False`` forces float32.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from scaling import enable_x64
    >>> with enable_x64():
    ...     print(jnp.ones(1).dtype)
    float64
    >>> print(jnp.ones(1).dtype)
    float32
    """
    import jax  # here, not at import: ``import scaling`` does not load jax

    scoped = getattr(jax, "enable_x64", None)
    if scoped is None:  # jax < 0.7
        from jax.experimental import enable_x64 as scoped
    with scoped(bool(enabled)):
        yield
