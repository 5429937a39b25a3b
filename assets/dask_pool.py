"""Valuation fits on a Dask distributed cluster, behind the `concurrent.futures.Executor`
interface every estimator already uses (docs/deploy.md, "Valuation on a Dask cluster").

The utility's data go to each worker once per run: the utility factory (the coalition
rows, the validation set, the spec) travels in a worker plugin registered for the run
(workers that join later get it too), each task names the run by key, and each worker
builds its utility (the binned LightGBM dataset) from it on its first task, then reuses it
for every fit of the run. Unregistering the plugin at the end frees it. Not `scatter`:
Dask's memory manager drops the extra replicas of scattered data whenever no task waits on
them, and workers then fetch it again, so a run of many batches shipped it many times.
The main process keeps drawing all randomness and reading results in the order it drew
the work, so the values are the same as with local processes.

Imported only when `OPENLEDGER_DASK_SCHEDULER` is set: `distributed` takes a second to
import, which the CLI does not pay otherwise.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any

from distributed import Client, Worker, WorkerPlugin

from assets.valuation import DASK_SCHEDULER_ENV, Utility, bound_utility

_FACTORIES: dict[str, Callable[[], Utility]] = {}  # in a worker process: each live run's
_UTILITIES: dict[str, Utility] = {}  # and the utility built from it there, once
_LOCKS: dict[str, threading.Lock] = {}  # one per run: its utility is built, then used, alone
_LOCKS_GUARD = threading.Lock()


class ClusterUnreachable(RuntimeError):
    """The Dask scheduler named by `DASK_SCHEDULER_ENV` cannot be used (one line)."""


class RunUtility(WorkerPlugin):
    """Carries one run's utility factory to every worker, once (and to workers that join
    during the run); its teardown frees the factory and the utility built from it."""

    def __init__(self, key: str, factory: Callable[[], Utility]) -> None:
        self.key, self.factory = key, factory

    def setup(self, worker: Worker) -> None:
        _FACTORIES[self.key] = self.factory

    def teardown(self, worker: Worker) -> None:
        _FACTORIES.pop(self.key, None)
        _UTILITIES.pop(self.key, None)
        _LOCKS.pop(self.key, None)


def _run_lock(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _call_with_utility(key: str, fn: Callable[..., Any], args: tuple) -> Any:
    """`fn(*args)` in a worker, with the run's utility bound (built on first use here).

    One task of a run at a time per worker process: a worker with several threads would
    otherwise train on the same binned dataset concurrently, which LightGBM's Python
    wrapper does not promise to allow (each fit has its own `num_threads` anyway)."""
    with _run_lock(key):
        utility = _UTILITIES.get(key)
        if utility is None:
            utility = _UTILITIES[key] = _FACTORIES[key]()
        with bound_utility(utility):
            return fn(*args)


class DaskPool(Executor):
    """An executor over a Dask client whose tasks find the run's utility with
    `valuation.worker_utility`; `max_workers` is the number of workers at start."""

    def __init__(self, client: Client, utility_factory: Callable[[], Utility]) -> None:
        self.client = client
        self.key = f"openledger-valuation-{uuid.uuid4().hex}"  # one per run
        client.register_plugin(RunUtility(self.key, utility_factory), name=self.key)
        self.max_workers = len(client.scheduler_info(n_workers=-1)["workers"])
        self.executor = client.get_executor(pure=False)  # a mask may be asked twice

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """`fn(*args)` on some worker, with this run's utility bound there."""
        if kwargs:
            raise TypeError("DaskPool.submit takes positional arguments only")
        return self.executor.submit(_call_with_utility, self.key, fn, args)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the tasks (all queued ones when `cancel_futures`) and free the workers'
        copy of the run's utility; the client stays with its owner."""
        self.executor.shutdown(wait=wait and not cancel_futures)
        self.client.unregister_worker_plugin(self.key)


def connect(address: str, timeout: float = 10.0) -> Client:
    """A client of the scheduler at `address` with at least one worker, or one clear line
    saying why not."""
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as error:  # OSError, TimeoutError, ValueError: all mean "cannot use it"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ClusterUnreachable(
            f"cannot reach the Dask scheduler {address!r} ({DASK_SCHEDULER_ENV}): {reason}"
        ) from error
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception as error:
        client.close()
        raise ClusterUnreachable(
            f"the Dask scheduler {address!r} ({DASK_SCHEDULER_ENV}) has no worker"
            f" after {timeout:g} s"
        ) from error
    return client


@contextmanager
def dask_pool(
    address: str, utility_factory: Callable[[], Utility], timeout: float = 10.0
) -> Iterator[DaskPool]:
    """A `DaskPool` on the scheduler at `address` for one valuation run; the queued fits
    are cancelled, the workers' utility freed and the client closed when it ends."""
    client = connect(address, timeout)
    try:
        pool = DaskPool(client, utility_factory)
        try:
            yield pool
        finally:
            pool.shutdown(cancel_futures=True)
    finally:
        client.close()
