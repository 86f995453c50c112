"""One interface for running independent jobs (pool members, bench cells, tuning trials): in this process, or on Ray.

A `Job` is a module-level function and its keyword arguments. Jobs are deterministic given their arguments (each
seeds its own RNGs from them) and do not modify them, so an executor may run them in any order, in any process, and
the results are the same; `map` returns them in the order of the jobs either way. Resumption is the jobs' own
business: each looks its result up in the content-keyed store first.

    with make_executor("ray", cpus_per_job=1) as executor:
        results = executor.map([Job(train_member, {"seed": s}, f"seed {s}") for s in range(8)], "pool")

Ray is optional and imported only when a Ray executor is made.
"""
from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import ConfigError
from .progress import task

EXECUTORS = ("local", "ray")
_INSTALL_RAY = "pip install unlearnkit[ray]"


@dataclass(frozen=True)
class Job:
    """`fn(**kwargs)`, labelled for the progress bar and Ray's log prefix.

    `fn` must be a module-level function that the workers can import (a module of an installed package, or of the
    driver's script folder), since a Ray worker finds it by module and name. Jobs must not modify their arguments:
    in-process they are the caller's objects, on Ray read-only copies. `Path` arguments are made absolute here, so
    that a worker started in another folder reads and writes the same files as this process."""

    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        qualname = getattr(self.fn, "__qualname__", "")
        if not callable(self.fn) or "<locals>" in qualname or "<lambda>" in qualname:
            raise TypeError(f"a Job needs a module-level function, got {self.fn!r}")
        object.__setattr__(self, "kwargs", {name: _absolute(value) for name, value in self.kwargs.items()})
        if not self.label:
            object.__setattr__(self, "label", getattr(self.fn, "__name__", "job"))

    def run(self) -> Any:
        return self.fn(**self.kwargs)


def _absolute(value: Any) -> Any:
    if isinstance(value, Path):
        return value.absolute()
    if isinstance(value, dict):
        return {k: _absolute(v) for k, v in value.items()}
    if type(value) in (list, tuple):  # exactly: a named tuple's fields are typed, leave them
        return type(value)(_absolute(v) for v in value)
    return value


class Executor(ABC):
    """Runs independent jobs; `map` returns their results in job order, with one progress bar, and raises the
    exception of the first job (in job order) that failed, as the job raised it."""

    name: str

    def map(self, jobs: Sequence[Job], description: str = "jobs") -> list[Any]:
        jobs = list(jobs)
        if not jobs:
            return []
        with task(description, len(jobs)) as advance:
            return self._run(jobs, advance)

    @abstractmethod
    def _run(self, jobs: list[Job], advance: Callable[..., None]) -> list[Any]: ...

    def close(self) -> None:
        """Release what the executor started (a Ray cluster); a no-op in-process."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcess(Executor):
    """One job after another, in this process (the default). With `threads`, torch uses that many threads while
    the jobs run (as a Ray worker would), and the process's own count after; without, the process's count."""

    name = "local"

    def __init__(self, threads: int | None = None):
        if threads is not None:
            _check_resources(1.0, 0.0, threads)
        self.threads = threads

    def _run(self, jobs: list[Job], advance: Callable[..., None]) -> list[Any]:
        import torch

        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            results = []
            for job in jobs:
                advance(0, info=job.label)
                results.append(job.run())
                advance()
            return results
        finally:
            torch.set_num_threads(before)


class RayExecutor(Executor):
    """Every job a Ray task with `cpus_per_job` CPUs and `gpus_per_job` GPUs (fractions share a GPU).

    With no `address` it starts a private local cluster on the first `map` (with `num_cpus` CPUs, default this
    machine's cores) and shuts it down on `close`; with `address` ("auto", "host:port" or "ray://host:port") it
    connects to that cluster and disconnects on `close`. Inside a Ray session that someone else opened it uses that
    session and leaves it open. Workers run torch with `threads` threads and this process's UNLEARNKIT_* variables.
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0,
                 threads: int | None = None, num_cpus: int | None = None):
        threads = _default_threads() if threads is None else threads
        _check_resources(cpus_per_job, gpus_per_job, threads)
        if num_cpus is not None and num_cpus < 1:
            raise ConfigError(f"num_cpus must be >= 1, got {num_cpus}")
        if address is not None and num_cpus is not None:
            raise ConfigError("num_cpus sizes a local Ray cluster; it cannot be given with an address")
        self._ray = _import_ray()
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_job, self.gpus_per_job, self.threads = float(cpus_per_job), float(gpus_per_job), threads
        self._owns_session = False
        self._remote = None
        self._task_options: dict[str, Any] = {}

    def _connect(self) -> None:
        """Start or join the cluster once; later maps reuse it (a start costs seconds)."""
        ray = self._ray
        if self._remote is not None and ray.is_initialized():
            return
        process_env = _process_env(self.threads)
        if not ray.is_initialized():
            local = self.address is None
            try:
                # "local" always starts a new cluster, never one found through RAY_ADDRESS or a `ray start`.
                ray.init(address="local" if local else self.address,
                         num_cpus=(self.num_cpus or _machine_cores()) if local else None,
                         include_dashboard=False if local else None, logging_level=logging.ERROR,
                         runtime_env={"env_vars": process_env})
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = "start a local Ray cluster" if local else f"connect to the Ray cluster at '{self.address}'"
                raise ConfigError(f"could not {where}: {_first_line(exc)}") from None
            self._owns_session = True
            if local:
                try:
                    self._check_fits(ray.cluster_resources())
                except ConfigError:
                    self.close()
                    raise
        options: dict[str, Any] = {"num_cpus": self.cpus_per_job, "num_gpus": self.gpus_per_job}
        job_env = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
        if any(job_env.get(k) != v for k, v in process_env.items()):
            # A session opened elsewhere, or by an executor with other threads: workers with our variables from
            # their start (start-up costs a few seconds once).
            options["runtime_env"] = {"env_vars": process_env}
        self._task_options = options
        self._remote = ray.remote(_run_in_worker)

    def _check_fits(self, resources: dict[str, float]) -> None:
        # Ray would wait forever for a task that no node can hold; say so now instead.
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if self.cpus_per_job > cpus:
            raise ConfigError(f"cpus_per_job={self.cpus_per_job:g} but the local Ray cluster has {cpus:g} CPUs")
        if self.gpus_per_job > gpus:
            raise ConfigError(f"gpus_per_job={self.gpus_per_job:g} but the local Ray cluster has {gpus:g} GPUs")

    def _run(self, jobs: list[Job], advance: Callable[..., None]) -> list[Any]:
        ray = self._ray
        advance(0, info="starting Ray" if not ray.is_initialized() else "")
        self._connect()
        env = _task_env(self.threads)
        shared = _shared_values(ray, jobs)
        refs = []
        for job in jobs:
            names = tuple(job.kwargs)
            # Object refs as top-level arguments are resolved by Ray before the call: shared values travel once.
            values = [shared.get(id(v), v) for v in job.kwargs.values()]
            options = {**self._task_options, "name": job.label}
            refs.append(self._remote.options(**options).remote(job.fn, names, env, self.threads, *values))
        order = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(jobs)
        failed: tuple[int, BaseException] | None = None
        pending = list(refs)
        try:
            while pending:
                [ref], pending = ray.wait(pending, num_returns=1)
                i = order[ref]
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped
                    # Raise what a loop in job order would: the earliest failure. Only the jobs before this one
                    # can still change which that is (then they fail sooner in order); the later ones are not needed.
                    failed = (i, _unwrap(ray, exc))
                    _cancel(ray, [r for r in pending if order[r] > i])
                    pending = [r for r in pending if order[r] < i]
                    continue
                advance(info=jobs[i].label)
        finally:
            _cancel(ray, pending)  # Ctrl-C, or a failure in this loop: stop what still runs
        if failed is not None:
            raise failed[1]
        return results

    def close(self) -> None:
        if self._owns_session and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_session, self._remote = False, None


def make_executor(name: str = "local", address: str | None = None, cpus_per_job: float = 1.0,
                  gpus_per_job: float = 0.0, threads: int | None = None, num_cpus: int | None = None) -> Executor:
    """"local" (in-process) or "ray". Resources are checked for both, so that a bad flag fails the same way
    whichever executor runs. `threads` is torch's thread count in a job; by default the process's own in-process,
    and $UNLEARNKIT_THREADS (else 1) on Ray."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{name}'; expected one of {', '.join(EXECUTORS)}")
    _check_resources(cpus_per_job, gpus_per_job, _default_threads() if threads is None else threads)
    if name == "local":
        return InProcess(threads)
    return RayExecutor(address, cpus_per_job, gpus_per_job, threads, num_cpus)


def _check_resources(cpus_per_job: float, gpus_per_job: float, threads: int) -> None:
    if not cpus_per_job > 0:
        raise ConfigError(f"cpus_per_job must be > 0, got {cpus_per_job}")
    if not gpus_per_job >= 0:
        raise ConfigError(f"gpus_per_job must be >= 0, got {gpus_per_job}")
    if gpus_per_job > 1 and gpus_per_job != int(gpus_per_job):
        raise ConfigError(f"gpus_per_job above 1 must be a whole number, got {gpus_per_job}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a whole number >= 1, got {threads}")


def _default_threads() -> int:
    from .runtime import default_threads

    return default_threads()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"the Ray executor needs ray, which is not installed: {_INSTALL_RAY}") from None
    return ray


def _machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not all the host has
    except AttributeError:
        return os.cpu_count() or 1


def _process_env(threads: int) -> dict[str, str]:
    """Variables a worker needs from its start: read once, at import (unlearnkit.runtime, OpenMP, MKL)."""
    return {"UNLEARNKIT_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "UNLEARNKIT_PROGRESS": "0"}  # a worker's bars would come back as log lines; the driver draws one bar


def _task_env(threads: int) -> dict[str, str]:
    """This process's UNLEARNKIT_* variables as they are now, with the store as an absolute path (a worker's
    working directory may differ), and the worker-side settings above."""
    from .artifacts import default_store

    env = {k: v for k, v in os.environ.items() if k.startswith("UNLEARNKIT_")}
    env["UNLEARNKIT_STORE"] = str(default_store().absolute())
    env.update({k: v for k, v in _process_env(threads).items() if k.startswith("UNLEARNKIT_")})
    return env


def _shared_values(ray, jobs: list[Job]) -> dict[int, Any]:
    """Object refs for the arguments that several jobs share (a dataset, a model), keyed by the object's id, so
    each is serialised into the object store once rather than once a job."""
    seen: dict[int, Any] = {}
    shared: dict[int, Any] = {}
    for job in jobs:
        for value in job.kwargs.values():
            if value is None or isinstance(value, (bool, int, float, complex, str, bytes, Path)):
                continue  # small; interned ones would look shared
            if id(value) in seen and id(value) not in shared:
                shared[id(value)] = ray.put(value)
            seen[id(value)] = value  # keeps the object alive, so that its id stays its own
    return shared


def _run_in_worker(fn: Callable[..., Any], names: tuple[str, ...], env: dict[str, str], threads: int, *values):
    """The Ray task: the driver's UNLEARNKIT_* environment and thread count, then the job."""
    import torch

    for key in [k for k in os.environ if k.startswith("UNLEARNKIT_") and k not in env]:
        del os.environ[key]
    os.environ.update(env)
    torch.set_num_threads(threads)
    return fn(**dict(zip(names, values)))


def _unwrap(ray, exc: BaseException) -> BaseException:
    """The job's own exception from Ray's RayTaskError wrapper, with the worker's traceback as a note."""
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, BaseException):
        cause = exc.cause
        if hasattr(cause, "add_note"):  # Python 3.11+; shown in a traceback, never in str(), so the CLI's line stays
            cause.add_note(f"raised in a Ray worker:\n{str(exc).rstrip()}")
        return cause
    return exc


def _cancel(ray, refs: list) -> None:
    for ref in refs:
        try:
            ray.cancel(ref)
        except Exception:  # noqa: BLE001 - a task that already finished, or a session already gone
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
