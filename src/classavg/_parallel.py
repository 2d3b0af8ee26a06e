"""Block maps in this process or on a Dask cluster.

Every long stage of classavg is a map over independent blocks: batches of images (basis
expansion, CTF correction, steerable PCA, bispectrum), row blocks of the neighbour search and
re-ranking, class ranges of the averaging.  :func:`block_map` runs such a map in the calling
process (``client=None``, the default) or as tasks of a :class:`dask.distributed.Client`.
Fitting steps (the PCAs, the CTF correction, the VDM eigen-solve) stay in the calling process:
they see a bounded subset or a compact summary of the data.

On a cluster the workers must see the same files as the caller (a shared filesystem): image
sources travel as their description (file names and metadata), never as pixels, except for
in-memory sources, which are pickled once per worker.  Large read-only inputs of every task
(the source, the fitted models, the feature matrix) are scattered once with
``broadcast=True``; at most ``max_in_flight`` tasks are submitted ahead of the one being
collected, so the caller holds a bounded number of block results.  Blocks are collected in
order and the block functions are deterministic, so a run gives the same result (up to
floating-point summation order inside BLAS) on one process and on any cluster.

Point classavg at a cluster with ``Client("tcp://scheduler:8786")`` (any dask.distributed
deployment: ``dask-scheduler`` + ``dask-worker``, dask-jobqueue on SLURM/PBS, dask-kubernetes)
or start one on this machine with :func:`dask_client` (``classavg run --dask-local N``).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque

__all__ = ["block_map", "dask_client", "client_workers"]

logger = logging.getLogger(__name__)


def block_map(func, items, *, shared=(), client=None, max_in_flight=None):
    """``func(*shared, item)`` for every item, in order, here or on a Dask cluster.

    Parameters
    ----------
    func : callable
        A module-level (picklable) function.
    items : iterable
        One argument per task (small: block bounds, index arrays, a block of a table).
    shared : tuple, optional
        Leading arguments common to every task (scattered once to every worker).
    client : dask.distributed.Client, optional
        Run the tasks on this client's cluster; None runs them in this process.
    max_in_flight : int, optional
        Tasks submitted ahead of the one being collected (default: twice the cluster's
        threads).

    Yields
    ------
    The results, in the order of ``items``.
    """
    if client is None:
        for item in items:
            yield func(*shared, item)
        return
    if max_in_flight is None:
        max_in_flight = 2 * max(1, sum(client.nthreads().values()))
    futures = [client.scatter(obj, broadcast=True, hash=False) for obj in shared]
    pending = deque()
    try:
        for item in items:
            pending.append(client.submit(func, *futures, item, pure=False))
            if len(pending) >= max_in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in list(pending) + futures:
            fut.release()


def client_workers(client):
    """Number of workers of a client (1 for None: this process)."""
    return 1 if client is None else max(1, len(client.scheduler_info().get("workers", {})))


@contextlib.contextmanager
def dask_client(scheduler=None, n_local=None, *, threads_per_worker=1):
    """A Dask client for the duration of a ``with`` block, or None.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).
    n_local : int, optional
        Start a :class:`dask.distributed.LocalCluster` of this many worker processes on this
        machine (closed on exit).
    threads_per_worker : int, optional
        Threads of each local worker (default 1: the block functions use threaded BLAS / FFT
        themselves, one worker process per core avoids oversubscription).

    Yields
    ------
    dask.distributed.Client or None
        None when neither ``scheduler`` nor ``n_local`` is given.
    """
    if scheduler is not None and n_local is not None:
        raise ValueError("give a scheduler address or a number of local workers, not both")
    if scheduler is None and n_local is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:                                      # pragma: no cover
        raise ImportError("Dask execution needs dask.distributed: "
                          "pip install 'classavg[dask]'") from exc
    if scheduler is not None:
        with Client(scheduler) as client:
            logger.info("Dask: connected to %s (%d workers)", scheduler,
                        client_workers(client))
            yield client
        return
    with LocalCluster(n_workers=int(n_local), threads_per_worker=threads_per_worker,
                      processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        logger.info("Dask: local cluster of %d workers", int(n_local))
        yield client
