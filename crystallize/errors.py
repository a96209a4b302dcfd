"""Errors raised by crystallize.

Every exception we raise derives from :class:`CrystallizeError`, so ``except
CrystallizeError`` catches all of them. A subclass also inherits the built-in it
refines, so ``except ValueError`` keeps working for definition and config mistakes.

CrystallizeError
├── DefinitionError (ValueError)             a definition is invalid when built
│   ├── InvalidNameError                     .name: a name that cannot be a path segment
│   ├── DuplicateNameError                   .name
│   ├── CycleError                           .cycle: the nodes on the cycle
│   └── ValidationError                      0.27 name, kept for ``except`` clauses
├── ConfigError (ValueError)                 .path, .key: a YAML mistake
├── ContextMutationError                     an existing context key was overwritten
├── PipelineExecutionError                   .step_name, .original_exception
├── MissingMetricError                       .metric: a hypothesis names an unrecorded metric
├── FingerprintError (ValueError)            code or data cannot be fingerprinted
│   └── UnhashableValueError                 .key: a value with no canonical encoding
├── StoreError                               .path: the on-disk store is unusable
│   └── ArtifactNotFoundError (KeyError)     .name, .step_name: an artifact file is missing
├── ExecutionError                           a backend could not run a job
│   ├── SerializationError (TypeError)       .what: the step, artifact or key that will not pickle
│   ├── WorkerCrashError                     a worker process died while running a job
│   └── MissingDependencyError (ImportError) .extra: an optional extra (e.g. ``ray``) is not installed
├── RenderError (RuntimeError)               a graph picture could not be produced
└── StatisticsError (ValueError)             a statistic is undefined for the samples given
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ArtifactNotFoundError",
    "ConfigError",
    "ContextMutationError",
    "CrystallizeError",
    "CycleError",
    "DefinitionError",
    "DuplicateNameError",
    "ExecutionError",
    "FingerprintError",
    "InvalidNameError",
    "MissingDependencyError",
    "MissingMetricError",
    "PipelineExecutionError",
    "RenderError",
    "SerializationError",
    "StatisticsError",
    "StoreError",
    "UnhashableValueError",
    "ValidationError",
    "WorkerCrashError",
]


class CrystallizeError(Exception):
    """Base class: ``except CrystallizeError`` catches everything crystallize raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take their own constructor arguments, so rebuild from args + attributes
        # instead of calling __init__ (errors cross process boundaries inside job results).
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(cls: type[CrystallizeError], args: tuple[Any, ...], state: dict[str, Any]) -> CrystallizeError:
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class DefinitionError(CrystallizeError, ValueError):
    """An experiment, treatment, step or graph definition is invalid."""


class InvalidNameError(DefinitionError):
    """A name that becomes a path segment or result key is not allowed.

    Parameters
    ----------
    name : str
        The rejected name.
    reason : str
        Why it is rejected, e.g. ``"contains '/'"``.
    what : str
        What the name belongs to (``"experiment"``, ``"treatment"``, ...).
    """

    def __init__(self, name: str, reason: str, *, what: str = "name") -> None:
        self.name, self.reason, self.what = name, reason, what
        super().__init__(f"invalid {what} name {name!r}: {reason}")


class DuplicateNameError(DefinitionError):
    """Two definitions share a name where names must be unique."""

    def __init__(self, message: str, *, name: str) -> None:
        self.name = name
        super().__init__(message)


class CycleError(DefinitionError):
    """An experiment graph contains a cycle; ``.cycle`` lists its nodes in order."""

    def __init__(self, cycle: Sequence[str], *, where: str | None = None) -> None:
        self.cycle, self.where = tuple(cycle), where
        path = " -> ".join([*self.cycle, self.cycle[0]]) if self.cycle else "?"
        super().__init__(f"Experiment graph contains cycles: {path}" + (f" (closed at {where})" if where else ""))


class ValidationError(DefinitionError):
    """An experiment failed validation (kept from crystallize-ml 0.27)."""


class ConfigError(CrystallizeError, ValueError):
    """A YAML configuration mistake, located by file and key path.

    Parameters
    ----------
    message : str
        What is wrong.
    path : Path or str
        The file at fault.
    key : str, optional
        Dotted key path inside the file, e.g. ``"steps[1].scale"``.
    """

    def __init__(self, message: str, *, path: Path | str, key: str | None = None) -> None:
        self.path, self.key = Path(path), key
        where = f"{path} [{key}]" if key else str(path)
        super().__init__(f"{where}: {message}")


class ContextMutationError(CrystallizeError):
    """An existing context key was written again (contexts are add-only)."""


class PipelineExecutionError(CrystallizeError):
    """A pipeline step raised; ``.original_exception`` is the step's own error."""

    def __init__(self, step_name: str, original_exception: BaseException) -> None:
        self.step_name = step_name
        self.original_exception = original_exception
        super().__init__(f"Step '{step_name}' failed: {original_exception!r}")


class MissingMetricError(CrystallizeError):
    """A hypothesis selects a metric that no condition recorded."""

    def __init__(self, metric: str, *, experiment: str | None = None, hypothesis: str | None = None) -> None:
        self.metric, self.experiment, self.hypothesis = metric, experiment, hypothesis
        where = ", ".join(f"{k} '{v}'" for k, v in (("experiment", experiment), ("hypothesis", hypothesis)) if v)
        super().__init__(f"Required metric '{metric}' missing from pipeline output" + (f" ({where})." if where else "."))


class FingerprintError(CrystallizeError, ValueError):
    """Code or data cannot be fingerprinted; declare ``version=`` to fix it."""


class UnhashableValueError(FingerprintError):
    """A value has no canonical encoding; ``.key`` names where it was found."""

    def __init__(self, key: str, value: object) -> None:
        self.key, self.value = key, value
        super().__init__(
            f"value for key {key!r} of type {type(value).__qualname__} has no canonical "
            "encoding; wrap it in resource_factory(...) or declare version= on its owner"
        )


class StoreError(CrystallizeError):
    """The artifact store at ``.path`` cannot be used as asked."""

    def __init__(self, message: str, *, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {message}")


class ArtifactNotFoundError(StoreError, KeyError):
    """An artifact file is missing: from the store, or from the staging path a step asked for.

    Parameters
    ----------
    message : str
        What is missing and why.
    path : Path or str
        Where it was looked for (or the artifact name).
    name : str
        The artifact's file name.
    step_name : str, optional
        The step that should have written it, when one should have.
    """

    def __init__(self, message: str, *, path: Path | str, name: str, step_name: str | None = None) -> None:
        self.name, self.step_name = name, step_name
        StoreError.__init__(self, message, path=path)

    def __str__(self) -> str:  # KeyError would quote the message
        return StoreError.__str__(self)


class ExecutionError(CrystallizeError):
    """A backend could not run a job."""


class SerializationError(ExecutionError, TypeError):
    """A definition cannot be sent to a worker; ``.what`` names the culprit."""

    def __init__(self, what: str, cause: BaseException) -> None:
        self.what = what
        super().__init__(
            f"{what} cannot be serialised for a worker process ({cause}); build it inside "
            "the worker with resource_factory(...) or use a serial/thread backend"
        )


class WorkerCrashError(ExecutionError):
    """A worker process died (segfault, ``os._exit``, OOM kill) while running a job."""


class MissingDependencyError(ExecutionError, ImportError):
    """An optional dependency is not installed; the message gives the install line.

    Parameters
    ----------
    what : str
        What needs it, e.g. ``"RayExecution"``.
    extra : str
        The crystallize extra that installs it, e.g. ``"ray"``.
    """

    def __init__(self, what: str, extra: str) -> None:
        self.extra = extra
        super().__init__(f"{what} needs the optional dependency '{extra}': pip install 'crystallize[{extra}]'")


class RenderError(CrystallizeError, RuntimeError):
    """A graph picture could not be produced."""


class StatisticsError(CrystallizeError, ValueError):
    """A statistic is undefined for the samples it was given."""
