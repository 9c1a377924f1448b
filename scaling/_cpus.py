"""How many CPUs this process may run on."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (a batch job's
    allocation, ``taskset``, a container's cpuset), else ``os.cpu_count()``.

    Thread pools sized by ``os.cpu_count()`` on a cluster node count every core of the
    node, not the few the job was given, and oversubscribe them.

    Examples
    --------
    >>> import os, scaling
    >>> 1 <= scaling.usable_cpus() <= (os.cpu_count() or 1)
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
