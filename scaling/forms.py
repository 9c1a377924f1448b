"""Scaling-law forms, addressable by object or by name.

Built in: ``power``, ``offset``, ``variance_limited``, ``broken`` (``broken(n)`` for
``n`` breaks), ``chinchilla``, ``kaplan``. Register your own with :func:`register`.
"""

from ._forms import (
    Form,
    available,
    broken,
    broken_power,
    chinchilla,
    evaluate,
    get,
    kaplan,
    offset,
    power,
    register,
    variance_limited,
)

__all__ = [
    "Form",
    "available",
    "broken",
    "broken_power",
    "chinchilla",
    "evaluate",
    "get",
    "kaplan",
    "offset",
    "power",
    "register",
    "variance_limited",
]
