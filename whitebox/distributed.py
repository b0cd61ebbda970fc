"""Data parallelism across processes: a communicator over MPI (CPUs) or NCCL (GPUs), one process per rank.

Every backward of whitebox is hand-written, so data-parallel training is the classic recipe done
by hand (:mod:`whitebox.train.loop`): each of the ``N`` ranks computes the gradient of its share
of the global batch, an all-reduce sums the loop's flat gradient buffer (:mod:`whitebox.flat`) in
place, and every rank applies the same update to the same parameters::

    g = Σ_r n_r ḡ_r / Σ_r n_r        # ḡ_r: the mean gradient over the n_r examples of rank r

which is the mean gradient over the global batch, what one process computes.

==========  ==================================================================================
``single``  one process (the default): every collective is the identity
``mpi``     mpi4py (``mpiexec -n N python -m whitebox ...``); NumPy buffers, device buffers go
            through the host
``nccl``    NCCL through CuPy (``cupyx.distributed``), one GPU per rank, device buffers on the
            current stream; the control messages (set-up checks, agreement) still go over MPI,
            which also launches the ranks and hands out the NCCL id
==========  ==================================================================================

A communicator has ``rank``, ``size``, ``allreduce_(flat)`` (sum, in place), ``broadcast_(flat)``
(from rank 0, in place), ``barrier()``, ``gather(obj)`` (to rank 0) and two guards against a
hang: :meth:`Communicator.agree` (every rank holds the same text, e.g. the run's config) and
:meth:`Communicator.together` (a block that fails on one rank fails on all of them, each rank
saying why). mpi4py and CuPy are optional dependencies, imported only when their backend is asked for.

Limits: the ranks stay equal only if the all-reduce hands every rank the same bits (MPICH's and
NCCL's sums do for a fixed number of ranks; the MPI standard recommends, not requires, it); a
Ctrl-C reaches every rank through ``mpiexec`` but a rank caught inside a collective cannot save.
The NCCL backend has not yet been run on a GPU.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager

import numpy as np

from .backend import array_module, is_device_array, to_host
from .flat import flat_copy, is_flat

BACKENDS = ("single", "mpi", "nccl")


class DistributedError(RuntimeError):
    """A distributed set-up that cannot run (a backend not installed, ranks that disagree ...)."""


class Communicator:
    """The single-process communicator (``size == 1``): the collectives change nothing."""

    backend = "single"
    rank, size = 0, 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_(self, flat):
        """Sum ``flat`` (1-D, NumPy or CuPy) over the ranks, in place; returns it."""
        return flat

    def broadcast_(self, flat):
        """Overwrite ``flat`` with rank 0's, in place; returns it."""
        return flat

    def barrier(self) -> None:
        """Wait until every rank gets here."""

    def gather(self, obj) -> list | None:
        """The ``obj`` of every rank, in rank order, on rank 0 (None on the others)."""
        return [obj]

    def agree(self, text: str, what: str) -> None:
        """:class:`DistributedError` on every rank unless every rank holds the same ``text`` (``what`` names it)."""
        if self.size == 1:
            return
        digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8).astype(np.float64)
        root = self._control_broadcast(digest.copy())
        differs = self._control_sum(float(not np.array_equal(root, digest)))
        if differs:
            raise collective_error(DistributedError(f"{int(differs)} of the {self.size} ranks disagree with rank 0 on {what}; "
                                   "launch every rank with the same arguments"))

    @contextmanager
    def together(self, what: str):
        """Run the block on every rank; if it raises on any rank, raise on every rank.

        The rank that failed re-raises its own error; the others raise :class:`DistributedError`
        saying that another rank failed. The block must not use the communicator (its ranks may
        not all reach a collective inside it).
        """
        try:
            yield
        except Exception as e:
            self._control_sum(1.0)
            e.collective = True  # every rank raises here: nobody is left waiting (see :func:`is_collective`)
            raise
        failed = self._control_sum(0.0)
        if failed:
            raise collective_error(DistributedError(f"{int(failed)} other rank(s) of {self.size} failed while {what}; "
                                               "their error is printed above"))

    def abort(self, status: int = 1) -> None:
        """Stop every rank at once (for a failure on one rank that the others would wait for)."""
        raise SystemExit(status)

    def _control_sum(self, value: float) -> float:
        return value

    def _control_broadcast(self, flat: np.ndarray) -> np.ndarray:
        return flat


class MPICommunicator(Communicator):
    """Ranks launched by ``mpiexec``, talking over mpi4py (host buffers)."""

    backend = "mpi"

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allreduce_(self, flat):
        if self.size > 1:
            host = self._host(flat)
            self.comm.Allreduce(self._mpi().IN_PLACE, host)
            self._back(host, flat)
        return flat

    def broadcast_(self, flat):
        if self.size > 1:
            host = self._host(flat)
            self.comm.Bcast(host, root=0)
            self._back(host, flat)
        return flat

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, status: int = 1) -> None:
        self.comm.Abort(status)

    def gather(self, obj) -> list | None:
        return self.comm.gather(obj, root=0)

    def _control_sum(self, value: float) -> float:
        return float(MPICommunicator.allreduce_(self, np.array([value]))[0]) if self.size > 1 else value

    def _control_broadcast(self, flat: np.ndarray) -> np.ndarray:
        return MPICommunicator.broadcast_(self, flat)

    @staticmethod
    def _mpi():
        from mpi4py import MPI
        return MPI

    @staticmethod
    def _host(flat) -> np.ndarray:
        if flat.ndim != 1 or not flat.flags.c_contiguous:
            raise ValueError(f"a communicator buffer must be 1-D and contiguous, got shape {tuple(flat.shape)}")
        return np.ascontiguousarray(to_host(flat))

    @staticmethod
    def _back(host: np.ndarray, flat) -> None:
        if is_device_array(flat):
            flat[...] = array_module(flat).asarray(host)


class NCCLCommunicator(MPICommunicator):
    """One GPU per rank: ``allreduce_``/``broadcast_`` of device buffers over NCCL on the current stream;
    everything else (rank, size, the guards, gather) as :class:`MPICommunicator`. Not GPU-verified."""

    backend = "nccl"

    def __init__(self, comm, cupy, nccl):
        super().__init__(comm)
        self.cupy, self.nccl = cupy, nccl

    def allreduce_(self, flat):
        if self.size > 1:
            if not is_device_array(flat):
                return super().allreduce_(flat)
            self.nccl.all_reduce(flat, flat, op="sum", stream=self.cupy.cuda.get_current_stream())
        return flat

    def broadcast_(self, flat):
        if self.size > 1:
            if not is_device_array(flat):
                return super().broadcast_(flat)
            self.nccl.broadcast(flat, root=0, stream=self.cupy.cuda.get_current_stream())
        return flat


SINGLE = Communicator()


def collective_error(error: Exception) -> Exception:
    """``error``, marked as raised by every rank together (:func:`is_collective`)."""
    error.collective = True
    return error


def is_collective(error: BaseException) -> bool:
    """Whether every rank raised ``error`` together (from :meth:`Communicator.agree` or ``together``),
    so that each may simply exit; any other error on one rank of several calls for :meth:`Communicator.abort`."""
    return getattr(error, "collective", False)


def broadcast_tree(comm: Communicator, tree: dict) -> dict:
    """``tree`` (name → array) overwritten in place by rank 0's, one broadcast per flat buffer
    (:mod:`whitebox.flat`; a plain dict is copied into flat buffers in its key order, the same on every rank)."""
    if comm.size > 1:
        flat = tree if is_flat(tree) else flat_copy(tree)
        for buffer in flat.buffers:
            comm.broadcast_(buffer)
        if flat is not tree:
            for k, v in flat.items():
                tree[k][...] = v
    return tree


def _mpi_world():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(f"--distributed needs mpi4py and an MPI library ({e}); install them with "
                               "pip install 'whitebox[mpi]' (mpi4py and the mpich wheel, which brings mpiexec)") from None
    return MPI.COMM_WORLD


def communicator(backend: str | None = None) -> Communicator:
    """The communicator of ``backend`` (``single``, ``mpi`` or ``nccl``; None: ``single``).

    ``mpi`` and ``nccl`` expect the ranks to be started by ``mpiexec -n N``; started alone, a
    process is a one-rank job. ``nccl`` puts rank ``r`` on GPU ``r mod (GPUs of its machine)``.
    Raises :class:`DistributedError` naming what to install when the backend's library is missing.
    """
    backend = backend or "single"
    if backend not in BACKENDS:
        raise DistributedError(f"unknown distributed backend {backend!r}; choose one of {BACKENDS}")
    if backend == "single":
        return SINGLE
    if backend == "mpi":
        return MPICommunicator(_mpi_world())
    try:  # the NCCL backend needs CuPy, the one optional GPU dependency
        import cupy
        import cupyx.distributed
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # ImportError, or a CUDA library failing to load
        raise DistributedError(f"--distributed nccl needs CuPy with NCCL and a CUDA device ({type(e).__name__}: "
                               f"{e}); install whitebox[gpu], or use --distributed mpi on CPUs") from None
    comm = _mpi_world()
    local = int(os.environ.get("MPI_LOCALRANKID", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", comm.Get_rank())))
    cupy.cuda.Device(local % devices).use()
    nccl = cupyx.distributed.init_process_group(comm.Get_size(), comm.Get_rank(), backend="nccl", use_mpi=True)
    return NCCLCommunicator(comm, cupy, nccl)
