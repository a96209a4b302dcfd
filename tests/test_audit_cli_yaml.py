"""Compatibility gaps found by an audit of the CLI, the YAML loader and the graph (spec sections
2, 7, 8, 11; reference-0.27 sections 12.2, 12.3, 13, 15.4; examples-0.27 sections 7a and 9b)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from foundation_kit import PRODUCER, read_json, write_folder

from crystallize import Experiment, ExperimentGraph, Pipeline, data_source, pipeline_step
from crystallize.cli.main import build_parser, main
from crystallize.errors import ConfigError

CONSUMER = {
    "config.yaml": """
        name: consumer
        replicates: 2
        datasource:
          producer_summary: producer#summary
        steps:
          - inspect_summary
        treatments:
          extra:
            bonus: 1
    """,
    "steps.py": """
        from crystallize import pipeline_step

        @pipeline_step()
        def inspect_summary(data, ctx, *, bonus: int = 0):
            return data, {"seen": data["producer_summary"]["total"] + bonus}
    """,
}


@pytest.fixture
def graph_dir(tmp_path: Path) -> Path:
    root = tmp_path / "experiments"
    write_folder(root / "producer", PRODUCER)
    write_folder(root / "consumer", CONSUMER)
    return root


@pytest.fixture(autouse=True)
def _wide_and_restored(monkeypatch: pytest.MonkeyPatch):
    """One table row per line; undo the logging setup ``main()`` does, as a CLI should."""
    monkeypatch.setenv("COLUMNS", "300")
    log = logging.getLogger("crystallize")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


def _row(out: str, *cells: str) -> bool:
    """True when one line of a rich table holds these cells in this order."""
    for line in out.splitlines():
        parts = [p.strip() for p in line.replace("┃", "│").split("│")]
        if [p for p in parts if p][: len(cells)] == list(cells):
            return True
    return False


# --- 1. list options take a space-separated list or repeat (spec section 8) ----------------------

@pytest.mark.parametrize("option", ["--treatment", "--only", "--force"])
def test_list_options_accept_both_forms(option: str) -> None:
    parser = build_parser()
    spaced = parser.parse_args(["run", "g", option, "a", "b"])
    repeated = parser.parse_args(["run", "g", option, "a", option, "b"])
    mixed = parser.parse_args(["run", "g", option, "a", "b", option, "c"])
    attr = option.lstrip("-")
    assert getattr(spaced, attr) == getattr(repeated, attr) == ["a", "b"]
    assert getattr(mixed, attr) == ["a", "b", "c"]
    assert spaced.path == "g"


def test_single_valued_options_stay_single() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "g", "--upto", "a", "b"])  # 'b' is an unexpected extra argument
    assert parser.parse_args(["run", "g"]).treatment is None


def test_run_with_a_space_separated_treatment_list(graph_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(graph_dir), "--treatment", "extra", "bigger", "--replicates", "1"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "bigger (v0)", "ran", "18") and _row(out, "extra (v0)", "ran", "7")
    assert main(["run", str(graph_dir), "--treatment", "extra", "--treatment", "bigger", "--replicates", "1"]) == 0
    assert "consumer: reused baseline, bigger, extra" in capsys.readouterr().out


# --- 2. visualize_from_yaml prints 0.27's text (reference 13, examples 9b) ---------------------------

def test_visualize_from_yaml_prints_dependencies_and_order(graph_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    dot = ExperimentGraph.visualize_from_yaml(graph_dir / "consumer" / "config.yaml")
    assert capsys.readouterr().out == ("Dependencies:\nproducer -> consumer\n"
                                       "Execution order: producer -> consumer\n")
    assert dot.startswith("digraph")


def test_visualize_from_yaml_lists_every_edge_in_execution_order(graph_dir: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    second = dict(CONSUMER, **{"config.yaml": CONSUMER["config.yaml"].replace("name: consumer", "name: audit")})
    write_folder(graph_dir / "audit", second)
    ExperimentGraph.visualize_from_yaml(graph_dir)
    assert capsys.readouterr().out.splitlines() == [
        "Dependencies:", "producer -> audit", "producer -> consumer", "Execution order: producer -> audit -> consumer"]


# --- 3. the baseline fallback is a WARNING worded like 0.27's (reference 12.3, examples 7a) ------------

def test_fallback_to_upstream_baseline_warns(graph_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        ExperimentGraph.from_yaml(graph_dir).run()
    warnings = [(r.name, r.getMessage()) for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [("crystallize.execution.report",
                         "consumer: artifact summary.json for condition 'extra' not found in upstream 'producer' "
                         "(v0); falling back to 'baseline'.")]


# --- 4. metadata.json of an unnamed experiment (reference 12.2) ----------------------------------------

@data_source
def _numbers(ctx):
    return [1, 2]


@pipeline_step()
def _count(data, ctx):
    return data, {"n": len(data)}


def test_metadata_name_is_null_when_unnamed(tmp_path: Path) -> None:
    exp = Experiment(datasource=_numbers(), pipeline=Pipeline([_count()]))
    exp.run()
    assert read_json(tmp_path / "data" / exp.id / "v0" / "metadata.json") == {"replicates": 1, "id": exp.id,
                                                                             "name": None}
    named = Experiment(datasource=_numbers(), pipeline=Pipeline([_count()]), name="counted")
    named.run()
    assert read_json(tmp_path / "data" / "counted" / "v0" / "metadata.json")["name"] == "counted"


# --- 5. refs resolve by name, else by folder; errors list the siblings (spec section 11) ----------------

def _rename_producer(graph_dir: Path, name: str) -> None:
    config = graph_dir / "producer" / "config.yaml"
    config.write_text(config.read_text().replace("name: producer", f"name: {name}"))


@pytest.mark.parametrize("load_from", [".", "consumer", "consumer/config.yaml"])
def test_reference_falls_back_to_the_folder_name(graph_dir: Path, load_from: str) -> None:
    _rename_producer(graph_dir, "prod")  # the ref says 'producer': the folder, not the name
    graph = ExperimentGraph.from_yaml(graph_dir / load_from)
    assert list(graph._graph.edges()) == [("prod", "consumer")]
    res = graph.run()
    assert res["consumer"].metrics.baseline.metrics == {"seen": [6, 6]}


def test_reference_prefers_a_name_over_a_folder(graph_dir: Path) -> None:
    """Folder ``producer`` is named ``other``; folder ``elsewhere`` is named ``producer``: the name wins."""
    _rename_producer(graph_dir, "other")
    write_folder(graph_dir / "elsewhere", PRODUCER)
    graph = ExperimentGraph.from_yaml(graph_dir / "consumer")
    assert sorted(graph._graph.nodes) == ["consumer", "producer"]
    assert graph.experiments["producer"].config_path == graph_dir / "elsewhere" / "config.yaml"


@pytest.mark.parametrize("load_from", [".", "consumer"])
def test_unknown_reference_lists_the_siblings(graph_dir: Path, load_from: str) -> None:
    _rename_producer(graph_dir, "prod")
    config = graph_dir / "consumer" / "config.yaml"
    config.write_text(config.read_text().replace("producer#summary", "nope#summary"))
    with pytest.raises(ConfigError, match=r"consumer/config\.yaml \[datasource\.producer_summary\]: reference to "
                                          r"unknown experiment 'nope'; no sibling has that name or folder "
                                          r"\(siblings: prod \(folder producer\)\)$"):
        ExperimentGraph.from_yaml(graph_dir / load_from)


# --- 6. cli: {hidden: true} is not listed (reference 15.4) ---------------------------------------------

def test_hidden_experiments_are_not_listed(graph_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = graph_dir / "producer" / "config.yaml"
    config.write_text(config.read_text() + "cli:\n  hidden: true\n  group: Mine\n")
    assert main(["list", str(graph_dir)]) == 0
    out = capsys.readouterr().out
    assert not _row(out, "producer") and _row(out, "consumer", "consumer")
    assert "1 hidden (cli: hidden: true); --all lists them" in out
    assert main(["list", str(graph_dir), "--all"]) == 0
    assert _row(capsys.readouterr().out, "producer", "producer")


def test_hidden_must_be_a_boolean(graph_dir: Path) -> None:
    config = graph_dir / "producer" / "config.yaml"
    config.write_text(config.read_text() + "cli:\n  hidden: 'yes'\n")
    with pytest.raises(ConfigError, match=r"producer/config\.yaml \[cli\.hidden\]: must be a bool, not str"):
        ExperimentGraph.from_yaml(graph_dir)


# --- 7. treatments disabled in config.state.json are labelled in the summary (spec section 2) ----------

def test_disabled_treatments_are_labelled_in_the_run_summary(graph_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (graph_dir / "consumer" / "config.state.json").write_text(json.dumps({"inactive_treatments": ["extra"]}))
    assert main(["run", str(graph_dir)]) == 0
    out = capsys.readouterr().out
    assert "consumer: ran baseline (never run); ran bigger (never run); skipped extra (disabled in " \
           "config.state.json)" in out
    assert _row(out, "extra", "disabled", "-")
    assert not _row(out, "extra (v0)")
    assert main(["run", str(graph_dir), "--treatment", "extra"]) == 2
    err = capsys.readouterr().err
    assert f"treatment(s) extra disabled in {graph_dir / 'consumer' / 'config.state.json'}; remove them from " \
           "'inactive_treatments' there to run them" in err
