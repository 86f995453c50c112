from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearnkit.artifacts import default_store
from unlearnkit.errors import ConfigError, SplitError
from unlearnkit.executor import InProcess, Job, RayExecutor, make_executor


# Jobs: module-level, deterministic given their arguments.
def train_linear(seed: int, steps: int = 5) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 6, generator=g), torch.randn(64, 3, generator=g)
    model = nn.Linear(6, 3)
    for _ in range(steps):  # plain SGD by hand: torch.optim's first step imports torch._dynamo (seconds per worker)
        model.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def sleep_then(value: int, delay: float) -> tuple[int, float]:
    time.sleep(delay)
    return value, time.monotonic()


def fail_at(value: int, bad: tuple[int, ...], delay: float = 0.0) -> int:
    time.sleep(delay)
    if value in bad:
        raise SplitError(f"job {value} has no forget samples")
    return value


def weighted_sum(data: torch.Tensor, weight: float) -> float:
    return float(data.sum() * weight)


def worker_settings() -> dict:
    return {"threads": torch.get_num_threads(), "env": os.environ.get("UNLEARNKIT_THREADS"),
            "flag": os.environ.get("UNLEARNKIT_FLAG"), "progress": os.environ.get("UNLEARNKIT_PROGRESS")}


def write_files(path: Path, text: str) -> str:
    """Writes to a path argument and into the store, as a job that saves its result does."""
    path.write_text(text)
    store = default_store()
    store.mkdir(parents=True, exist_ok=True)
    (store / f"{text}.txt").write_text(text)
    return str(store.absolute())


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install unlearnkit[ray])")
    # Ray workers import a job's function by module name; this test module is not on their path, so send it along.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with RayExecutor(num_cpus=2) as executor:  # one local cluster (~4 s to start) for the whole module
        yield executor
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert not ray.is_initialized()  # it shut down the cluster it started


def both(ray_executor):
    return [InProcess(), ray_executor]


def test_in_process_and_ray_train_bitwise_equal_weights(ray_executor):
    jobs = [Job(train_linear, {"seed": s}, f"seed {s}") for s in (0, 1, 2)]
    local, distributed = InProcess().map(jobs, "pool"), ray_executor.map(jobs, "pool")
    for a, b in zip(local, distributed):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(local[0]["weight"], local[1]["weight"])  # the seeds really differ


def test_results_come_back_in_job_order_when_jobs_finish_out_of_order(ray_executor):
    jobs = [Job(sleep_then, {"value": i, "delay": 0.8 if i == 0 else 0.0}) for i in range(4)]
    results = ray_executor.map(jobs, "order")
    assert [value for value, _ in results] == [0, 1, 2, 3]
    assert results[0][1] > max(finished for _, finished in results[1:])  # the first job finished last
    assert [value for value, _ in InProcess().map(jobs)] == [0, 1, 2, 3]


def test_shared_arguments_travel_once_and_give_the_same_results(ray_executor):
    data = torch.arange(10_000, dtype=torch.float64)  # shared by every job: put into Ray's object store once
    jobs = [Job(weighted_sum, {"data": data, "weight": w}) for w in (0.5, 1.0, 2.0)]
    assert ray_executor.map(jobs) == InProcess().map(jobs) == [0.5 * 49_995_000, 49_995_000.0, 2 * 49_995_000]


def test_a_job_error_reaches_the_caller_unchanged_on_both_paths(ray_executor):
    jobs = [Job(fail_at, {"value": i, "bad": (2,)}) for i in range(4)]
    for executor in both(ray_executor):
        with pytest.raises(SplitError) as caught:
            executor.map(jobs, "cells")
        assert type(caught.value) is SplitError and str(caught.value) == "job 2 has no forget samples"


def test_the_earliest_failing_job_in_job_order_wins_on_both_paths(ray_executor):
    # Job 3 fails first in time, job 1 later: both executors raise job 1's error, as a loop in order would.
    jobs = [Job(fail_at, {"value": i, "bad": (1, 3), "delay": 0.4 if i == 1 else 0.0}) for i in range(4)]
    for executor in both(ray_executor):
        with pytest.raises(SplitError, match="^job 1 has"):
            executor.map(jobs)
    assert ray_executor.map([Job(fail_at, {"value": 5, "bad": ()})]) == [5]  # the cluster is still usable


def test_workers_get_the_thread_count_and_the_drivers_unlearnkit_environment(ray_executor, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_FLAG", "on")
    [settings] = ray_executor.map([Job(worker_settings)])
    assert settings == {"threads": 1, "env": "1", "flag": "on", "progress": "0"}
    # Another thread count on the same session: its workers start with it (and the session stays open after).
    two = RayExecutor(threads=2)
    [settings] = two.map([Job(worker_settings)])
    two.close()
    assert settings == {"threads": 2, "env": "2", "flag": "on", "progress": "0"}
    assert InProcess(threads=2).map([Job(worker_settings)])[0]["threads"] == 2 and torch.get_num_threads() == 1
    monkeypatch.delenv("UNLEARNKIT_FLAG")
    assert ray_executor.map([Job(worker_settings)])[0]["flag"] is None  # the environment of this call, not the last


def test_relative_paths_and_store_resolve_as_in_the_driver(ray_executor, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ray's workers keep the directory the cluster was started in
    monkeypatch.setenv("UNLEARNKIT_STORE", "runs")
    jobs = [Job(write_files, {"path": Path(f"{name}.out"), "text": name}) for name in ("local", "ray")]
    InProcess().map(jobs[:1])
    assert ray_executor.map(jobs[1:]) == [str(tmp_path / "runs")]
    for name in ("local", "ray"):
        assert (tmp_path / f"{name}.out").read_text() == name and (tmp_path / "runs" / f"{name}.txt").exists()


def test_no_jobs_start_nothing():
    pytest.importorskip("ray", reason="ray is not installed (pip install unlearnkit[ray])")
    idle = RayExecutor()
    assert InProcess().map([]) == [] and idle.map([]) == [] and idle._remote is None


def test_jobs_need_module_level_functions():
    with pytest.raises(TypeError, match="module-level"):
        Job(lambda: 1)
    assert Job(train_linear, {"seed": 0}).label == "train_linear"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "dask"}, "unknown executor 'dask'; expected one of local, ray"),
    ({"name": "ray", "cpus_per_job": 0}, "cpus_per_job must be > 0, got 0"),
    ({"name": "local", "gpus_per_job": -0.5}, "gpus_per_job must be >= 0, got -0.5"),
    ({"name": "ray", "gpus_per_job": 1.5}, "gpus_per_job above 1 must be a whole number, got 1.5"),
    ({"name": "ray", "threads": 0}, "threads must be a whole number >= 1, got 0"),
    ({"name": "ray", "address": "auto", "num_cpus": 2}, "num_cpus sizes a local Ray cluster"),
])
def test_bad_names_and_resources_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        make_executor(**kwargs)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_job_that_no_node_can_hold_fails_before_it_waits_forever():
    executor = object.__new__(RayExecutor)
    executor.cpus_per_job, executor.gpus_per_job = 1.0, 0.5
    with pytest.raises(ConfigError, match="gpus_per_job=0.5 but the local Ray cluster has 0 GPUs"):
        executor._check_fits({"CPU": 2.0})


def test_ray_missing_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ConfigError, match=r"pip install unlearnkit\[ray\]"):
        make_executor("ray")
    assert isinstance(make_executor("local"), InProcess)


def test_importing_the_executor_does_not_import_ray():
    code = "import sys, unlearnkit.executor; assert 'ray' not in sys.modules, 'ray was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
