"""``--threads N`` of a benchmark script, read before NumPy is imported so that the BLAS thread pools see it.

Each script runs, before its NumPy import::

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _threads import early_threads
    THREADS = early_threads(sys.argv[1:])
"""

from __future__ import annotations

import os

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def early_threads(argv, default: int | None = 1) -> int | None:
    """The ``--threads`` value in ``argv`` (``default`` without one), exported to every BLAS/OpenMP
    thread variable; with no value and ``default=None`` the environment is left as it is."""
    threads = default
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    if threads is not None:
        for var in THREAD_VARS:
            os.environ[var] = str(threads)
    return threads
