"""Run jobs as Ray tasks, on a local Ray instance or a cluster (the only module that imports ``ray``).

A :class:`RayBackend` sends each :class:`~crystallize.execution.job.Job` as one remote
task. What travels, and how:

* the run definition (steps, datasource, treatments, plugins) is cloudpickled once per run
  by :class:`~crystallize.execution.job.DefinitionRef`, put into the object store once, and
  unpickled at most once per worker process (cached by the run's key);
* upstream artifact files are put into the object store once per content hash (SHA-256);
  a worker that cannot see the runner's path writes the bytes once into a worker-local
  cache folder and reads them from there (see :func:`materialise_inputs`);
* results come back as a :class:`~crystallize.execution.job.JobResult` with artifacts as
  bytes: files a step staged with ``ctx.artifacts.path(...)`` are read on the worker,
  because the runner may share no filesystem with it. Only the runner writes the store.

Importing this module does not import Ray; creating a backend does, and fails with
:class:`~crystallize.errors.MissingDependencyError` (an ``ImportError``) when Ray is absent.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.datasources.artifacts import ArtifactInput, ArtifactRecord, clean_staged
from crystallize.errors import MissingDependencyError, WorkerCrashError
from crystallize.execution.job import _WORKER_DEFINITIONS, Job, JobError, JobResult, _load_definition
from crystallize.fingerprint.content import bytes_digest
from crystallize.execution.local import _ExecutionPlugin, _run_job_remote, refuse_while_bootstrapping

if TYPE_CHECKING:
    from crystallize.execution.backend import Backend

__all__ = ["RayBackend", "RayExecution", "materialise_inputs"]

logger = logging.getLogger(__name__)

_KEEP_DEFINITIONS = 16  # object-store refs of run definitions kept by one backend
_KEEP_BLOB_BYTES = 256 * 1024 * 1024  # upstream file bytes kept referenced in the object store
_CACHE_ENV = "CRYSTALLIZE_RAY_CACHE"  # worker-local folder for materialised upstream artifacts
# ray.init keys that only make sense when starting a new local instance
_LOCAL_ONLY = frozenset({"num_cpus", "num_gpus", "resources", "object_store_memory"})


def _import_ray() -> Any:
    """Import Ray, or explain how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("RayExecution", "ray") from exc
    return ray


# --- what travels to a worker -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ShippedFile:
    """An upstream artifact file in the object store.

    Attributes
    ----------
    digest : str
        Content hash (BLAKE3 hex); the worker-side cache key.
    size : int
        Length in bytes; a same-path file of another size on the worker is not trusted.
    ref : tuple
        ``(ObjectRef,)``: nested in a tuple so Ray does not fetch the bytes before the task
        starts; the worker fetches them only when its cache lacks this hash.
    """

    digest: str
    size: int
    ref: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RemoteJob:
    """A :class:`Job` as sent to a Ray task: the definition travels as an object-store ref."""

    key: str
    definition: tuple[Any, ...]  # (ObjectRef of the cloudpickled definition,), fetched only on a cache miss
    condition: str
    replicate: int
    seed: int
    inputs: Mapping[str, ArtifactInput]
    files: Mapping[str, ShippedFile]  # artifact key -> bytes of the file this replicate reads
    trust_paths: bool  # False: always read upstream files from the shipped bytes


# --- worker side ----------------------------------------------------------------------------

def _cache_dir() -> Path:
    return Path(os.environ.get(_CACHE_ENV) or Path(tempfile.gettempdir()) / "crystallize-ray-inputs")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _place(blob: Path, target: Path) -> None:
    """Make ``target`` hold the bytes of ``blob`` (hard link, else copy), atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        os.link(blob, tmp)
    except OSError:
        tmp.write_bytes(blob.read_bytes())
    os.replace(tmp, target)


def materialise_inputs(inputs: Mapping[str, ArtifactInput], files: Mapping[str, ShippedFile], replicate: int, *,
                       fetch: Callable[[ShippedFile], bytes], cache_dir: Path,
                       trust_paths: bool = True) -> dict[str, ArtifactInput]:
    """Point each upstream artifact input at a file this worker can read.

    An input whose path exists here with the shipped size (same machine or a shared
    filesystem) is kept as is, unless ``trust_paths`` is false. Otherwise the file's bytes
    are fetched once per content hash into ``cache_dir/<digest>.blob`` and linked into
    ``cache_dir/<digest>/`` under the same relative layout, and the input is re-pointed there.

    Parameters
    ----------
    inputs : Mapping[str, ArtifactInput]
        Artifact key -> input pinned by the runner (paths on the runner's machine).
    files : Mapping[str, ShippedFile]
        Artifact key -> the bytes of the file replicate ``replicate`` reads.
    replicate : int
        Consumer replicate of the job.
    fetch : Callable[[ShippedFile], bytes]
        Gets the bytes (``ray.get`` on a worker); called at most once per hash and folder.
    cache_dir : Path
        Worker-local cache folder.
    trust_paths : bool
        Use a runner path when it exists here with the right size.

    Returns
    -------
    dict[str, ArtifactInput]
        Inputs to give the job.
    """
    out: dict[str, ArtifactInput] = {}
    for key, pinned in inputs.items():
        shipped, path = files.get(key), pinned.path(replicate)
        if shipped is None or (trust_paths and _same_size(path, shipped.size)):
            out[key] = pinned
        else:
            out[key] = _local_copy(pinned, path, shipped, fetch, cache_dir)
    return out


def _local_copy(pinned: ArtifactInput, path: Path, shipped: ShippedFile, fetch: Callable[[ShippedFile], bytes],
                cache_dir: Path) -> ArtifactInput:
    """``pinned`` re-pointed at ``cache_dir/<digest>``, holding ``path``'s bytes at the same relative place."""
    blob = cache_dir / f"{shipped.digest}.blob"
    if not _same_size(blob, shipped.size):
        _write_atomic(blob, fetch(shipped))
    root = cache_dir / shipped.digest
    local = root / path.relative_to(pinned.version_dir)
    if not _same_size(local, shipped.size):
        _place(blob, local)
    return dataclasses.replace(pinned, version_dir=str(root))


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _inline_staged(result: JobResult) -> JobResult:
    """Read files staged on the worker into bytes (the runner may not see this disk)."""
    if not any(rec.data is None for rec in result.artifacts):
        return result
    records = []
    for rec in result.artifacts:
        if rec.data is not None or rec.staged is None:
            records.append(rec)
            continue
        data = rec.staged.read_bytes()  # run_job made sure it exists
        clean_staged(rec.staged)
        records.append(ArtifactRecord(rec.name, data, rec.step_name))
    return dataclasses.replace(result, artifacts=tuple(records))


def _worker_definition(key: str, holder: tuple[Any, ...]) -> Any:
    """The run definition, fetched from the object store only on this process's first job of the run."""
    if key in _WORKER_DEFINITIONS:
        return _load_definition(key, b"")  # cache hit: the payload is never needed again here
    ray = _import_ray()
    return _load_definition(key, ray.get(holder[0]))


def _setup_failure(job: RemoteJob, exc: Exception) -> JobResult:
    import traceback

    hint = ""
    if isinstance(exc, ImportError):
        hint = (" (code the definition refers to is not importable on the Ray worker: install it there, or ship it "
                "with RayExecution(init_kwargs={'runtime_env': {'working_dir': '.'}}))")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return JobResult(job.condition, job.replicate, job.seed, None,
                     error=JobError(type(exc).__name__, f"{exc}{hint}", text, None))


def run_remote_job(job: RemoteJob) -> JobResult:
    """Body of the Ray task: load the definition, materialise inputs, run, inline staged files."""
    try:
        definition = _worker_definition(job.key, job.definition)
        inputs = materialise_inputs(job.inputs, job.files, job.replicate, fetch=_fetch_blob, cache_dir=_cache_dir(),
                                    trust_paths=job.trust_paths)
    except Exception as exc:  # boundary: a worker that cannot set up reports it as the job's error
        return _setup_failure(job, exc)
    result = _run_job_remote(Job(definition, job.condition, job.replicate, job.seed, inputs))
    return _inline_staged(result)


def _fetch_blob(shipped: ShippedFile) -> bytes:
    return bytes(_import_ray().get(shipped.ref[0]))


# --- runner side ----------------------------------------------------------------------------

def _connect(ray: Any, address: str | None, init_kwargs: Mapping[str, Any]) -> bool:
    """Join a cluster or start a local one; True when this call ran ``ray.init``."""
    if ray.is_initialized():
        return False
    kwargs = dict(init_kwargs)
    if address is not None:
        ray.init(address=address, **kwargs)
        return True
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)  # Ray reads RAY_ADDRESS itself
        return True
    if not _LOCAL_ONLY & set(kwargs):  # resource settings mean "start a local instance"
        try:
            ray.init(address="auto", **kwargs)
            logger.info("joined the running Ray cluster")
            return True
        except ConnectionError:
            pass
    kwargs.setdefault("include_dashboard", False)
    ray.init(**kwargs)
    logger.info("started a local Ray instance")
    return True


def _capacity(ray: Any, num_cpus: float, num_gpus: float) -> int:
    resources = ray.cluster_resources()
    slots = [int(resources.get("CPU", 1) // num_cpus)] if num_cpus > 0 else [int(resources.get("CPU", 1))]
    if num_gpus > 0:
        slots.append(int(resources.get("GPU", 0) // num_gpus))
    return max(1, min(slots))


class RayBackend:
    """Runs each job as a Ray task.

    Parameters
    ----------
    address : str, optional
        Cluster to join (``"ray://host:10001"``, ``"auto"``, ``"host:6379"``). Without one:
        an already initialised Ray, else ``RAY_ADDRESS``, else a running local cluster, else
        a new local instance.
    num_cpus, num_gpus : float
        Resources each task asks for.
    init_kwargs : Mapping[str, Any], optional
        Extra ``ray.init`` arguments (``runtime_env``, ``namespace``, ...).
    shared_filesystem : bool, optional
        ``True``: never ship upstream artifact bytes (every worker sees the runner's paths).
        ``False``: always read upstream artifacts from shipped bytes. ``None`` (default):
        ship them, and let each worker use the runner's path when it exists there.
    max_in_flight : int, optional
        Cap on ``capacity`` (jobs kept submitted at once); default: the cluster's CPUs
        divided by ``num_cpus``.

    Raises
    ------
    MissingDependencyError
        When Ray is not installed (the message says ``pip install 'crystallize[ray]'``).
    """

    remote = True

    def __init__(self, *, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 init_kwargs: Mapping[str, Any] | None = None, shared_filesystem: bool | None = None,
                 max_in_flight: int | None = None) -> None:
        refuse_while_bootstrapping()
        ray = _import_ray()
        self._ray = ray
        self._started = _connect(ray, address, init_kwargs or {})
        self._task = ray.remote(run_remote_job).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)
        self.capacity = _capacity(ray, num_cpus, num_gpus)
        if max_in_flight is not None:
            self.capacity = max(1, min(self.capacity, max_in_flight))
        self.shared_filesystem = shared_filesystem
        self._lock = threading.Lock()
        self._definitions: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._files: dict[tuple[str, int, int], tuple[str, int]] = {}  # (path, size, mtime_ns) -> (sha, size)
        self._blobs: collections.OrderedDict[str, tuple[Any, int]] = collections.OrderedDict()  # sha -> (ref, size)

    def submit(self, job: Job) -> Future[JobResult]:
        """Start ``job`` as a Ray task; a crashed worker becomes a ``WorkerCrashError`` result."""
        remote = RemoteJob(job.definition.key, (self._definition_ref(job),), job.condition, job.replicate, job.seed,
                           dict(job.inputs), self._ship(job), self.shared_filesystem is not False)
        ref = self._task.remote(remote)
        outer: Future[JobResult] = Future()
        outer.set_running_or_notify_cancel()  # submitted means in flight: Ctrl-C lets it finish and be stored
        ref.future().add_done_callback(lambda inner: self._settle(inner, outer, job))
        return outer

    def _definition_ref(self, job: Job) -> Any:
        key = job.definition.key
        with self._lock:
            ref = self._definitions.get(key)
            if ref is None:
                ref = self._definitions[key] = self._ray.put(job.definition.payload())
                while len(self._definitions) > _KEEP_DEFINITIONS:
                    self._definitions.popitem(last=False)  # running tasks still hold their own reference
            return ref

    def _ship(self, job: Job) -> dict[str, ShippedFile]:
        """Object-store references to the upstream files this job reads, one ``put`` per content hash."""
        if self.shared_filesystem:
            return {}
        shipped = {}
        for key, pinned in job.inputs.items():
            path = pinned.path(job.replicate)
            try:
                stat = path.stat()
            except OSError:
                continue  # the job reports the missing file as usual
            shipped[key] = self._blob(path, (str(path), stat.st_size, stat.st_mtime_ns))
        return shipped

    def _blob(self, path: Path, signature: tuple[str, int, int]) -> ShippedFile:
        with self._lock:
            known = self._files.get(signature)
            if known is not None and known[0] in self._blobs:
                self._blobs.move_to_end(known[0])
                return ShippedFile(known[0], known[1], (self._blobs[known[0]][0],))
        data = path.read_bytes()
        digest = bytes_digest(data)
        with self._lock:
            self._files[signature] = (digest, len(data))
            if digest not in self._blobs:
                self._blobs[digest] = (self._ray.put(data), len(data))
                self._evict_blobs()
            self._blobs.move_to_end(digest)
            return ShippedFile(digest, len(data), (self._blobs[digest][0],))

    def _evict_blobs(self) -> None:
        total = sum(size for _, size in self._blobs.values())
        while total > _KEEP_BLOB_BYTES and len(self._blobs) > 1:
            _, (_, size) = self._blobs.popitem(last=False)
            total -= size

    def _settle(self, inner: Future[Any], outer: Future[JobResult], job: Job) -> None:
        try:
            result = inner.result()
        except Exception as exc:  # boundary: a task that did not return becomes this job's failure
            result = JobResult(job.condition, job.replicate, job.seed, None, error=self._task_error(exc, job))
        outer.set_result(result)

    def _task_error(self, exc: Exception, job: Job) -> JobError:
        """Describe a task that raised instead of returning a result."""
        errors = self._ray.exceptions
        if isinstance(exc, errors.RayTaskError):  # the task body raised (a bug, not a user error)
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return JobError(type(cause).__name__, str(cause), str(exc), None)
        if isinstance(exc, errors.TaskCancelledError):
            return JobError("TaskCancelledError", f"the Ray task was cancelled: {exc}", repr(exc), None)
        if isinstance(exc, errors.RayError):  # worker died, node lost, out of memory
            crash = WorkerCrashError(f"Ray worker failed while running {job.condition} replicate {job.replicate} "
                                     f"({type(exc).__name__}: segfault, os._exit, out of memory or a lost node)")
            return JobError("WorkerCrashError", str(crash), f"{type(exc).__name__}: {exc}", None, crash)
        return JobError(type(exc).__name__, str(exc), repr(exc), None)  # e.g. a result that will not load here

    def close(self) -> None:
        """Drop object-store references; shut Ray down only if this backend started it."""
        with self._lock:
            self._definitions.clear()
            self._blobs.clear()
            self._files.clear()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


class RayExecution(_ExecutionPlugin):
    """Run replicate-conditions as Ray tasks (extra ``crystallize[ray]``).

    Parameters
    ----------
    address : str, optional
        Cluster to join, e.g. ``"ray://head:10001"``. Default: join ``RAY_ADDRESS`` or a
        running cluster, else start a local Ray instance (shut down when the run ends).
    num_cpus, num_gpus : float
        Resources per task (per replicate-condition), as in 0.27.
    init_kwargs : Mapping[str, Any], optional
        Extra ``ray.init`` arguments, e.g. ``{"runtime_env": {"working_dir": "."}}`` to ship
        your code to a remote cluster.

    Examples
    --------
    >>> plugin = RayExecution(num_cpus=2)        # does not import or start Ray yet
    >>> plugin.num_cpus, plugin.address
    (2, None)
    """

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 init_kwargs: Mapping[str, Any] | None = None) -> None:
        if num_cpus < 0 or num_gpus < 0:
            raise ValueError(f"num_cpus and num_gpus must be >= 0, not {num_cpus} and {num_gpus}")
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.init_kwargs = dict(init_kwargs or {})

    def make_backend(self) -> Backend:
        """A :class:`RayBackend` with these settings (connects to or starts Ray)."""
        return RayBackend(address=self.address, num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                          init_kwargs=self.init_kwargs)
