"""Valuation on a Dask cluster: a `LocalCluster` of 2 worker processes over TCP on loopback
gives the same values, standard errors and counts as the local pool and one process, and
gets the utility's data once per worker per run (docs/deploy.md)."""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from distributed import Client, LocalCluster

from assets import dask_pool
from assets.attribution import scheduler_address, value_contributors
from assets.banzhaf import msr_banzhaf
from assets.dask_pool import ClusterUnreachable
from assets.datanets import DatanetSpec
from assets.svarm import svarm_shapley
from assets.valuation import (
    DASK_SCHEDULER_ENV,
    StoppingRule,
    Utility,
    ValuationResult,
    permutation_shapley,
)
from ledger.lake import Lake

pytestmark = pytest.mark.slow

RECEIVED: Counter[str] = Counter()  # per worker process: copies of a factory unpickled there
BUILT: Counter[str] = Counter()  # per worker process: utilities a factory built there


@dataclass
class CountingFactory:
    """A utility factory that counts, in the process it is in, how often it arrived there
    (unpickled) and how often it built a utility."""

    inner: Callable[[], Utility]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        RECEIVED[self.token] += 1

    def __call__(self) -> Utility:
        BUILT[self.token] += 1
        return self.inner()


def counts_here(token: str) -> tuple[int, int, int]:
    """(copies received, utilities built, runs held) in the worker process it runs in."""
    return RECEIVED[token], BUILT[token], len(dask_pool._FACTORIES) + len(dask_pool._UTILITIES)


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes, one thread each, over TCP on loopback; afterwards, no process
    it started is left."""
    resource_tracker.ensure_running()  # multiprocessing's, which lives as long as this one
    before = children()
    with LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as local:
        yield local
    deadline = time.monotonic() + 30
    while (stray := children() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not stray


@pytest.fixture(scope="module")
def wine(demo_lake_root: Path) -> tuple[list[str], partial]:
    from demo_pipeline import wine_utility_factory  # imports Dagster: not in the workers

    return wine_utility_factory(Lake(demo_lake_root))


ESTIMATORS = {  # small budgets, several batches each
    "svarm": partial(svarm_shapley, sets_per_batch=6),
    "permutation": partial(
        permutation_shapley, truncation=0.01, pairs_per_batch=2, exact_first=True
    ),
    "banzhaf": partial(msr_banzhaf, sets_per_batch=6),
}


def assert_identical(a: ValuationResult, b: ValuationResult) -> None:
    assert np.array_equal(a.values, b.values)
    assert np.array_equal(a.std_errors, b.std_errors)
    assert np.array_equal(a.counts, b.counts)
    assert a.utility_evaluations == b.utility_evaluations
    assert a.converged == b.converged and a.method == b.method


@pytest.mark.parametrize("name", ESTIMATORS)
def test_values_on_the_cluster_are_those_of_the_local_pool_and_of_one_process(
    cluster: LocalCluster, wine: tuple[list[str], partial], name: str
) -> None:
    players, factory = wine
    estimator = ESTIMATORS[name]
    rule = StoppingRule(half_width=1e-6, max_evaluations=40)
    one = estimator(factory(), players, rule, seed=5)
    local = estimator(factory(), players, rule, seed=5, workers=2, utility_factory=factory)
    with dask_pool.dask_pool(cluster.scheduler_address, factory) as pool:
        assert pool.max_workers == 2
        on_cluster = estimator(factory(), players, rule, seed=5, workers=2, pool=pool)
    assert_identical(one, local)
    assert_identical(one, on_cluster)
    assert on_cluster.notes["worker_fits"] > 0  # the fits did run on the cluster
    assert one.notes["worker_fits"] == 0


def idle_once(sampled: int, evaluations: int, half_width: float) -> None:
    """Wait once, mid-run, longer than Dask's memory manager cycle (2 s): it drops extra
    copies of data no task waits for, which `scatter(broadcast=True)` data were."""
    if not getattr(idle_once, "done", False):
        idle_once.done = True  # type: ignore[attr-defined]
        time.sleep(2.5)


def test_the_utility_data_reach_each_worker_once_per_run(
    cluster: LocalCluster, wine: tuple[list[str], partial]
) -> None:
    players, inner = wine
    factory = CountingFactory(inner)
    rule = StoppingRule(half_width=1e-6, max_evaluations=60)
    with (
        Client(cluster.scheduler_address, set_as_default=False) as client,
        dask_pool.dask_pool(cluster.scheduler_address, factory) as pool,
    ):
        result = svarm_shapley(
            inner(), players, rule, seed=1, sets_per_batch=4, pool=pool, progress=idle_once
        )
        during = client.run(counts_here, factory.token)
    assert result.utility_evaluations > 10 * len(during)  # many tasks on each worker
    assert sorted(during) == sorted(cluster.scheduler_info["workers"])
    for received, built, held in during.values():
        assert received == 1  # shipped once, never with a task
        assert built == 1  # the binned dataset was built once, then reused by every fit
        assert held == 2  # this run's factory and utility
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        after = client.run(counts_here, factory.token)
    assert all(held == 0 for _, _, held in after.values())  # the run's data are freed


def test_the_environment_variable_moves_value_contributors_to_the_cluster(
    cluster: LocalCluster,
    wine: tuple[list[str], partial],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, factory = wine
    spec: DatanetSpec = factory.args[0]
    policy = spec.valuation.model_copy(update={"exact_max_players": 1, "max_evaluations": 40})
    monte_carlo = spec.model_copy(update={"valuation": policy})
    rows, validation = factory.args[1], factory.args[2]
    monkeypatch.delenv(DASK_SCHEDULER_ENV, raising=False)
    here = value_contributors(monte_carlo, rows, validation)
    monkeypatch.setenv(DASK_SCHEDULER_ENV, f" {cluster.scheduler_address} ")
    assert scheduler_address() == cluster.scheduler_address
    there = value_contributors(monte_carlo, rows, validation)
    assert_identical(here, there)
    assert here.notes["worker_fits"] == 0 < there.notes["worker_fits"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "127.0.0.1", "http://x:1"])
def test_a_bad_scheduler_address_is_one_clear_line(
    wine: tuple[list[str], partial], address: str
) -> None:
    address = address.format(port=closed_port())
    started = time.monotonic()
    with (
        pytest.raises(ClusterUnreachable) as raised,
        dask_pool.dask_pool(address, wine[1], timeout=1),
    ):
        pass
    message = str(raised.value)
    assert "\n" not in message
    assert address in message and DASK_SCHEDULER_ENV in message
    assert time.monotonic() - started < 10


def test_a_scheduler_without_workers_is_one_clear_line(wine: tuple[list[str], partial]) -> None:
    empty = LocalCluster(n_workers=0, protocol="tcp", host="127.0.0.1", dashboard_address=None)
    with (
        empty,
        pytest.raises(ClusterUnreachable, match=r"has no worker after 1 s$") as raised,
        dask_pool.dask_pool(empty.scheduler_address, wine[1], timeout=1),
    ):
        pass
    assert "\n" not in str(raised.value) and empty.scheduler_address in str(raised.value)
