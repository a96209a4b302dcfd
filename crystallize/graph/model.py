"""ExperimentGraph: experiments as nodes, artifact flows as edges (a networkx DiGraph).

The graph is a definition: building it does no I/O. ``run``, ``status``, ``plan`` and the
rendering methods are thin facades over ``crystallize.execution``, ``crystallize.graph.plan``
and ``crystallize.graph.render``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import networkx as nx

from crystallize.datasources.artifacts import Artifact
from crystallize.errors import CycleError, DefinitionError, DuplicateNameError
from crystallize.experiment import Experiment

if TYPE_CHECKING:
    from crystallize.graph.render import GraphView
    from crystallize.graph.status import GraphStatus, RunPlan
    from crystallize.results import Result
    from crystallize.treatments import Treatment

__all__ = ["ExperimentGraph"]


class ExperimentGraph:
    """A DAG of experiments run in topological order.

    Parameters
    ----------
    *experiments : Experiment
        Experiments to add; edges are inferred from the artifacts they read
        (same as :meth:`from_experiments`).
    name : str, optional
        Graph name; defaults to the single sink node's name, else ``"ExperimentGraph"``.

    Attributes
    ----------
    seed : int or None
        Graph master seed: node ``n`` gets ``SeedSequence(seed, spawn_key=<n>)`` unless it
        sets its own.
    store_root : Path or None
        Store root for every node (YAML graphs: ``<graph folder>/data``).
    versioned : bool or None
        Force versioned stores on every node (YAML graphs and the CLI: ``True``).
    backend, workers : str or None, int or None
        Default backend name and worker count (YAML ``graph.yaml``; the CLI may override).
    """

    def __init__(self, *experiments: Experiment, name: str | None = None) -> None:
        self._graph: nx.DiGraph = nx.DiGraph()
        self._name = name
        self._order: tuple[str, ...] | None = None  # cached topological order; reset on every change
        self._experiments: Mapping[str, Experiment] | None = None
        self._producers: dict[int, tuple[str, Artifact]] = {}  # id(output artifact) -> (producing node, artifact)
        self.seed: int | None = None
        self.store_root: Path | None = None
        self.versioned: bool | None = None
        self.backend: str | None = None
        self.workers: int | None = None
        self.source: Path | None = None  # folder or file the graph was loaded from
        self.description: str | None = None
        if experiments:
            self._add_all(experiments)

    # construction ---------------------------------------------------------------
    @classmethod
    def from_experiments(cls, experiments: Sequence[Experiment], name: str | None = None) -> ExperimentGraph:
        """Build a graph, inferring producer -> consumer edges from artifact identity.

        Raises
        ------
        DuplicateNameError
            Two experiments share a name.
        DefinitionError
            An experiment has no name, or reads an artifact no experiment in the graph produces.
        CycleError
            The artifact flow has a cycle (``.cycle`` lists it).
        """
        graph = cls(name=name)
        graph._add_all(experiments)
        return graph

    def _add_all(self, experiments: Iterable[Experiment]) -> None:
        experiments = list(experiments)
        for exp in experiments:
            self.add_experiment(exp)
        producers = {key: node for key, (node, _) in self._producers.items()}
        for exp in experiments:
            for artifact in exp.upstream_artifacts:
                producer = producers.get(id(artifact))
                if producer is None and artifact.producer_name in self._graph:
                    producer = artifact.producer_name  # e.g. an artifact_datasource() source
                if producer is None:
                    raise DefinitionError(f"Artifact '{artifact.name}' read by '{exp.name}' has no producing experiment "
                                          "in this graph")
                self._link(exp.name, producer, artifact.name)
        self._check_acyclic()

    def add_experiment(self, experiment: Experiment, *, _standalone: bool = False) -> None:
        """Add a node (no edges). Experiments need a name (unless checked alone)."""
        if not isinstance(experiment, Experiment):
            raise TypeError(f"expected an Experiment, not {type(experiment).__name__}")
        if experiment.name is None and not _standalone:
            raise DefinitionError("Experiment must have a name")
        key = experiment.store_name
        if key in self._graph:
            raise DuplicateNameError(f"two experiments are named '{key}'", name=key)
        for artifact in experiment.outputs.values():
            known = self._producers.get(id(artifact))
            if known is not None:
                raise DuplicateNameError(f"Artifact '{artifact.name}' is produced by multiple experiments: "
                                         f"'{known[0]}' and '{key}'", name=artifact.name)
        for artifact in experiment.outputs.values():
            self._producers[id(artifact)] = (key, artifact)  # the artifact is kept so its id stays unique
        self._graph.add_node(key, experiment=experiment)
        experiment.claim_outputs()
        self._order = self._experiments = None

    def claim_outputs(self) -> None:
        """Give every output artifact back to its node in this graph: an experiment built
        later may have listed the same Artifact object (see :meth:`Experiment.claim_outputs`).
        Status, planning and runs call it first."""
        for experiment in self.experiments.values():
            experiment.claim_outputs()

    def _link(self, downstream: str, upstream: str, artifact: str | None = None) -> None:
        if self._graph.has_edge(upstream, downstream):
            if artifact:
                self._graph.edges[upstream, downstream]["artifacts"].append(artifact)
            return
        self._graph.add_edge(upstream, downstream, artifacts=[artifact] if artifact else [])
        self._order = self._experiments = None

    def add_dependency(self, downstream: Experiment | str, upstream: Experiment | str) -> None:
        """Add an ordering edge ``upstream -> downstream`` (both must already be nodes).

        Raises
        ------
        KeyError
            If either experiment is not in the graph.
        CycleError
            If the edge closes a cycle.
        """
        down, up = (e if isinstance(e, str) else e.store_name for e in (downstream, upstream))
        for name in (down, up):
            if name not in self._graph:
                raise KeyError(f"experiment '{name}' is not in the graph; add_experiment() it first")
        self._link(down, up)
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        try:
            cycle = nx.find_cycle(self._graph)
        except nx.NetworkXNoCycle:
            return
        raise CycleError([u for u, _ in cycle])

    # inspection -------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        """Explicit name, else the single sink's name, else ``"ExperimentGraph"`` (``None`` when empty)."""
        if self._name:
            return self._name
        if not self._graph:
            return None
        sinks = [n for n in self._graph if self._graph.out_degree(n) == 0]
        return sinks[0] if len(sinks) == 1 else "ExperimentGraph"

    @property
    def experiments(self) -> Mapping[str, Experiment]:
        """Experiments by name, in topological order (a read-only view, cached with the order)."""
        if self._experiments is None or self._order is None:
            self._experiments = MappingProxyType({n: self._graph.nodes[n]["experiment"] for n in self.order()})
        return self._experiments

    def order(self) -> list[str]:
        """Topological order, ties broken by name (iterative; no recursion over depth)."""
        if self._order is None:
            self._order = tuple(nx.lexicographical_topological_sort(self._graph))
        return list(self._order)

    def upstream(self, name: str) -> list[str]:
        """Direct upstream nodes of ``name``, sorted."""
        return sorted(self._graph.predecessors(name))

    def ancestors(self, name: str) -> set[str]:
        return set(nx.ancestors(self._graph, name))

    def artifacts_on(self, upstream: str, downstream: str) -> tuple[str, ...]:
        """Artifact names carried by an edge."""
        return tuple(self._graph.edges[upstream, downstream].get("artifacts", ()))

    def __contains__(self, name: object) -> bool:
        return name in self._graph

    def __len__(self) -> int:
        return self._graph.number_of_nodes()

    def __repr__(self) -> str:
        return f"ExperimentGraph(name={self.name!r}, nodes={self.order()})"

    # YAML -------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentGraph:
        """Load a graph from a folder of experiment folders, or from one ``config.yaml``.

        See ``docs/yaml.md``. Raises :class:`ConfigError` naming the file and key at fault.
        """
        from crystallize.config.loader import load_graph

        return load_graph(Path(path))

    @staticmethod
    def visualize_from_yaml(path: str | Path, output: str | Path | None = None) -> str:
        """Print a YAML graph's dependencies and execution order (as 0.27 did) and return its DOT source.

        Parameters
        ----------
        path : str or Path
            A graph folder, an experiment folder or one ``config.yaml``.
        output : str or Path, optional
            Also write a picture there (svg, png, pdf, dot, mmd; see :meth:`render`).

        Returns
        -------
        str
            DOT source of the graph.

        Examples
        --------
        For examples-0.27 section 9 it prints::

            Dependencies:
            producer -> consumer
            Execution order: producer -> consumer
        """
        graph = ExperimentGraph.from_yaml(path)
        print(_dependencies_text(graph))  # 0.27's documented output: this facade prints by contract
        if output is not None:
            graph.render(output)
        return graph.to_dot()

    # running ----------------------------------------------------------------------------
    def run(self, treatments: Sequence[Treatment] | None = None, replicates: int | None = None,
            strategy: str | None = None, *, only: Sequence[str] | None = None, upto: str | None = None,
            force: Sequence[str] | bool | None = None, backend: Any = None, on_event: Any = None) -> dict[str, Result]:
        """Run every node in topological order; returns ``{experiment name: Result}``.

        Parameters
        ----------
        treatments : Sequence[Treatment], optional
            Replaces every node's treatments (0.27 meaning).
        replicates : int, optional
            Overrides every node's replicate count.
        strategy : {"rerun", "resume"}, optional
            Overrides every node's strategy.
        only : Sequence[str], optional
            Run just these nodes; others are read from the store.
        upto : str, optional
            Run this node and its ancestors.
        force : Sequence[str] or bool, optional
            Nodes (or all, with ``True``) to rerun even when fresh.
        backend : str or Backend, optional
            ``"serial"``, ``"thread"``, ``"process"``, ``"async"``, ``"ray"`` or an instance.

        Raises
        ------
        KeyError
            For a node name in ``only``, ``upto`` or ``force`` that is not in the graph.
        DefinitionError
            When one treatment name has different payloads in two nodes.
        MissingMetricError
            After every node ran and stored, if a hypothesis names an unrecorded metric.
        """
        from crystallize.execution.graph_runner import run_graph

        outcome = run_graph(self, treatments=treatments, replicates=replicates, strategy=strategy, only=only,
                            upto=upto, force=force, backend=backend, on_event=on_event)
        if outcome.deferred is not None:
            raise outcome.deferred
        return outcome.results

    async def arun(self, treatments: Sequence[Treatment] | None = None, replicates: int | None = None,
                   strategy: str | None = None, progress_callback: Any = None, **kwargs: Any) -> dict[str, Result]:
        """Async form of :meth:`run`; ``progress_callback(status, name)`` is awaited with
        ``"running"`` and then ``"completed"`` (or ``"failed"``) per node."""
        import asyncio

        from crystallize.execution.events import NodeFinished, NodeStarted

        loop = asyncio.get_running_loop()
        pending: list[Any] = []

        def on_event(event: object) -> None:
            if progress_callback is None:
                return
            if isinstance(event, NodeStarted):
                pending.append(asyncio.run_coroutine_threadsafe(progress_callback("running", event.experiment), loop))
            elif isinstance(event, NodeFinished):
                state = "failed" if event.failed else "completed"
                pending.append(asyncio.run_coroutine_threadsafe(progress_callback(state, event.experiment), loop))

        results = await asyncio.to_thread(self.run, treatments, replicates, strategy, on_event=on_event, **kwargs)
        for fut in pending:
            await asyncio.wrap_future(fut)
        return results

    def status(self) -> GraphStatus:
        """Every node's state and reasons (spec section 4). Pure: no run, no store writes
        except the input-file hash cache."""
        from crystallize.graph.plan import graph_status

        return graph_status(self)

    def plan(self, strategy: str = "resume", *, only: Sequence[str] | None = None, upto: str | None = None,
             force: Sequence[str] | bool | None = None) -> RunPlan:
        """What :meth:`run` would execute: ``will_run`` (stale now), ``may_run`` (waits on upstream), ``fresh``."""
        from crystallize.graph.plan import plan_graph

        return plan_graph(self, strategy=strategy, only=only, upto=upto, force=force)

    # pictures ---------------------------------------------------------------------------
    def view(self, *, status: bool = True) -> GraphView:
        """The renderer's value object for this graph (with statuses when ``status``)."""
        from crystallize.graph.views import graph_view

        return graph_view(self, status=status)

    def to_dot(self, status: bool = True, *, rankdir: str = "LR") -> str:
        """DOT source of the graph (no ``dot`` binary needed)."""
        from crystallize.graph import render

        return render.to_dot(self.view(status=status), status=status, rankdir=rankdir)

    def to_mermaid(self, status: bool = True) -> str:
        """A Mermaid flowchart for Markdown documents, with each node's status (as
        :meth:`to_dot` and :meth:`render`) unless ``status=False``."""
        from crystallize.graph import render

        return render.to_mermaid(self.view(status=status), status=status)

    def render(self, path: str | Path, *, format: str | None = None, status: bool = True, rankdir: str = "LR",
               focus: str | None = None, hops: int = 1, only: Sequence[str] | None = None) -> Path:
        """Write a picture; the format comes from the suffix (svg, png, pdf, dot, mmd).

        Raises
        ------
        RenderError
            When the ``dot`` binary is missing (for svg/png/pdf) or a PNG would be too large.
        """
        from crystallize.graph import render

        view = self.view(status=status)
        if focus is not None or only is not None:
            view = render.subview(view, focus=focus, hops=hops, only=only)
        return render.render(view, Path(path), format=format, status=status, rankdir=rankdir)

    def _repr_svg_(self) -> str | None:
        """The picture, with status, for Jupyter; ``None`` (Jupyter then shows the text
        repr) when the ``dot`` binary is missing or the status cannot be computed."""
        from crystallize.errors import CrystallizeError
        from crystallize.graph import render

        try:
            return render.to_svg(self.view(status=True), status=True)
        except CrystallizeError:
            return None


def _dependencies_text(graph: ExperimentGraph) -> str:
    """``Dependencies:``, one ``upstream -> downstream`` line per edge, then ``Execution order: a -> b``.

    Edges are listed in execution order of their upstream node, then of their downstream node.
    """
    order = graph.order()
    rank = {name: i for i, name in enumerate(order)}
    edges = sorted(graph._graph.edges(), key=lambda e: (rank[e[0]], rank[e[1]]))
    lines = ["Dependencies:", *(f"{up} -> {down}" for up, down in edges)]
    return "\n".join([*lines, f"Execution order: {' -> '.join(order)}"])
