"""HypothesisResult: the outcome of one hypothesis over all treatments.

Re-exported by :mod:`crystallize.hypothesis` (its 0.27 home) and
:mod:`crystallize.experiments`. ``to_dict``/``from_dict`` give the JSON form
stored with a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HypothesisResult", "Ranking"]

_VERSION_SUFFIX = re.compile(r"^(?P<name>.*) \(v\d+\)$")


class Ranking(dict):  # type: ignore[type-arg]
    """``{"best": name | None, "ranked": [(name, score), ...]}``, 0.27's two keys.

    0.27's documentation read ``ranking["ordered"]``, which 0.27 itself never had; here it
    answers the treatment names in ranked order, without being stored as a third key (so
    the mapping still compares equal to, and serialises as, 0.27's two-key dict).

    Examples
    --------
    >>> r = Ranking(best="a", ranked=[("a", 0.01), ("b", 0.2)])
    >>> r == {"best": "a", "ranked": [("a", 0.01), ("b", 0.2)]}, r["ordered"], r.get("ordered")
    (True, ['a', 'b'], ['a', 'b'])
    """

    def __missing__(self, key: str) -> Any:
        if key == "ordered":
            return [name for name, _ in self.get("ranked", [])]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self or key == "ordered" else default


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays and nested containers to plain Python values."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist) and type(value).__module__ == "numpy":
        return tolist()
    return value


@dataclass(frozen=True, slots=True)
class HypothesisResult:
    """Outcome of one hypothesis over all treatments.

    Parameters
    ----------
    name : str
        Hypothesis name.
    results : dict[str, Any]
        Verifier output per treatment name (a list of outputs for grouped
        metrics). Treatments whose verifier raised are absent.
    ranking : dict
        A :class:`Ranking`: ``{"best": name | None, "ranked": [(name, score), ...]}``,
        ascending by score (lower is better); ``ranking["ordered"]`` lists the names.
    errors : dict[str, str]
        ``"TypeName: message"`` per treatment whose verifier raised, and under
        ``"ranker"`` when the ranker raised.
    """

    name: str
    results: dict[str, Any]
    ranking: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)

    def get_for_treatment(self, treatment: str) -> Any | None:
        """Return the verifier output for ``treatment`` (``"name (vN)"`` accepted), or None."""
        if treatment in self.results:
            return self.results[treatment]
        match = _VERSION_SUFFIX.match(treatment)
        return self.results.get(match["name"]) if match else None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``ranked`` pairs become two-element lists)."""
        ranking = dict(self.ranking)
        ranking["ranked"] = [[name, score] for name, score in ranking.get("ranked", [])]
        return {
            "name": self.name,
            "results": _plain(self.results),
            "ranking": _plain(ranking),
            "errors": dict(self.errors),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HypothesisResult:
        """Rebuild a result from :meth:`to_dict` output (0.27 dicts without errors too)."""
        raw = dict(data.get("ranking") or {})
        ranked = [(name, score) for name, score in raw.get("ranked", [])]
        ranking = Ranking(best=raw.get("best"), ranked=ranked)
        return cls(
            name=str(data["name"]),
            results=dict(data.get("results") or {}),
            ranking=ranking,
            errors=dict(data.get("errors") or {}),
        )
