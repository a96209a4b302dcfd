"""The command line: exit codes, output, JSON status, rendering, listing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crystallize.cli.main import main


def test_run_then_resume_reuses_everything(yaml_graph: Path, capsys):
    assert main(["run", str(yaml_graph)]) == 0
    out = capsys.readouterr().out
    assert f"store: {(yaml_graph / 'data').resolve()}" in out
    assert "baseline (v0)" in out and "extra (v0)" in out and "bigger (v0)" in out
    assert (yaml_graph / "data" / "consumer" / "v0" / "run.json").exists()
    assert main(["run", str(yaml_graph)]) == 0
    out = capsys.readouterr().out
    assert "producer: reused baseline, bigger" in out
    assert "consumer: reused baseline, bigger, extra" in out
    assert not (yaml_graph / "data" / "consumer" / "v1").exists()  # a no-op resume creates no version


def test_status_exit_codes_and_json(yaml_graph: Path, capsys):
    assert main(["status", str(yaml_graph), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1 and doc["fresh"] is False
    assert doc["nodes"]["producer"]["state"] == "NEVER_RUN"
    assert doc["nodes"]["producer"]["conditions"]["bigger"]["missing_replicates"] == [0, 1]
    main(["run", str(yaml_graph)])
    capsys.readouterr()
    assert main(["status", str(yaml_graph), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fresh"] is True
    assert {n["state"] for n in doc["nodes"].values()} == {"FRESH"}


def test_status_names_the_changed_parameter(yaml_graph: Path, capsys):
    main(["run", str(yaml_graph)])
    capsys.readouterr()
    config = yaml_graph / "producer" / "config.yaml"
    config.write_text(config.read_text().replace("scale: 3", "scale: 4"))
    assert main(["status", str(yaml_graph), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    producer = doc["nodes"]["producer"]
    assert producer["conditions"]["baseline"]["state"] == "FRESH"
    assert producer["conditions"]["bigger"]["reasons"][0]["kind"] == "TREATMENT_CHANGED"
    consumer = doc["nodes"]["consumer"]  # inherits 'bigger', so its payload change is the consumer's too
    assert consumer["state"] == "STALE"
    assert consumer["conditions"]["bigger"]["reasons"][0]["kind"] == "TREATMENT_CHANGED"
    assert consumer["conditions"]["extra"]["state"] == "FRESH"


def test_status_table_names_the_replicates_a_resume_would_run(yaml_graph: Path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    main(["run", str(yaml_graph)])
    capsys.readouterr()
    config = yaml_graph / "consumer" / "config.yaml"
    config.write_text(config.read_text().replace("replicates: 3", "replicates: 5"))
    assert main(["status", str(yaml_graph)]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if "consumer" in line)
    assert "baseline (replicates 3-4), bigger (replicates 3-4), extra (replicates 3-4)" in row


def test_unknown_treatment_and_config_errors_exit_2(yaml_graph: Path, capsys):
    assert main(["run", str(yaml_graph), "--treatment", "nope"]) == 2
    assert "unknown treatment(s) nope" in capsys.readouterr().err
    (yaml_graph / "consumer" / "config.yaml").write_text("name: consumer\nname: again\n")
    assert main(["run", str(yaml_graph)]) == 2
    err = capsys.readouterr().err
    assert "config.yaml [name]: duplicate key (line 2; first on line 1)" in err


def test_treatment_selection_runs_only_named(yaml_graph: Path, capsys):
    assert main(["run", str(yaml_graph), "--treatment", "extra", "--replicates", "2"]) == 0
    out = capsys.readouterr().out
    assert "extra (v0)" in out and "bigger (v0)" not in out


def test_failed_node_exits_1(yaml_graph: Path, capsys):
    steps = yaml_graph / "consumer" / "steps.py"
    steps.write_text(steps.read_text().replace("return data, {", "raise RuntimeError('boom')\n    return data, {"))
    assert main(["run", str(yaml_graph)]) == 1
    out = capsys.readouterr().out
    assert "failed or blocked: consumer" in out
    assert "RuntimeError: boom" in out


def test_render_dot_and_mermaid(yaml_graph: Path, tmp_path: Path):
    assert main(["render", str(yaml_graph), "-o", str(tmp_path / "g.dot"), "--no-status"]) == 0
    dot = (tmp_path / "g.dot").read_text()
    assert "producer" in dot and "consumer" in dot and "summary.json" in dot
    assert main(["render", str(yaml_graph), "-o", str(tmp_path / "g.mmd")]) == 0
    assert (tmp_path / "g.mmd").read_text().count("-->") == 1


def test_list_shows_experiments_and_errors(yaml_graph: Path, capsys):
    assert main(["list", str(yaml_graph)]) == 0
    out = capsys.readouterr().out
    assert "producer" in out and "consumer" in out and "graph" in out
    bad = yaml_graph / "broken"
    bad.mkdir()
    (bad / "config.yaml").write_text("name: broken\nbogus: 1\ndatasource: {x: y}\n")
    assert main(["list", str(yaml_graph)]) == 1


def test_python_dash_m_and_no_command(yaml_graph: Path):
    proc = subprocess.run([sys.executable, "-m", "crystallize", "status", str(yaml_graph), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["schema"] == 1
    assert main([]) == 2


@pytest.mark.parametrize("argv", [["run"], ["render", "x"], ["run", "x", "--backend", "gpu"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


@pytest.mark.parametrize("backend", ["serial", "thread", "async"])
def test_step_calling_sys_exit_fails_its_replicates_not_the_run(yaml_graph: Path, backend: str):
    steps = yaml_graph / "consumer" / "steps.py"
    steps.write_text("import sys\n" + steps.read_text().replace("return data, {", "sys.exit(0)\n    return data, {"))
    proc = subprocess.run([sys.executable, "-m", "crystallize", "run", str(yaml_graph), "--backend", backend],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed or blocked: consumer" in proc.stdout
    assert "SystemExit: 0 (step Inspect_SummaryStep)" in proc.stdout


def test_copied_graph_folder_stays_fresh(yaml_graph: Path, tmp_path: Path, capsys):
    import shutil

    assert main(["run", str(yaml_graph)]) == 0
    copy = tmp_path / "elsewhere" / "graph"
    shutil.copytree(yaml_graph, copy)
    capsys.readouterr()
    assert main(["status", str(copy), "--json"]) == 0  # module names and file paths are not fingerprinted
    assert json.loads(capsys.readouterr().out)["fresh"] is True


def test_dotenv_in_the_working_directory_is_loaded_without_overriding(yaml_graph: Path, tmp_path: Path,
                                                                      monkeypatch, capsys):
    import os

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CRYSTALLIZE_TEST_DOTENV=from-file\nCRYSTALLIZE_TEST_SET=from-file\n")
    monkeypatch.setenv("CRYSTALLIZE_TEST_DOTENV", "placeholder")  # so monkeypatch removes it afterwards
    monkeypatch.delenv("CRYSTALLIZE_TEST_DOTENV")
    monkeypatch.setenv("CRYSTALLIZE_TEST_SET", "from-env")
    assert main(["list", str(yaml_graph)]) == 0
    assert os.environ["CRYSTALLIZE_TEST_DOTENV"] == "from-file"
    assert os.environ["CRYSTALLIZE_TEST_SET"] == "from-env"


def test_brackets_in_user_text_print_as_text(yaml_graph: Path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    steps = yaml_graph / "consumer" / "steps.py"
    steps.write_text(steps.read_text().replace(
        "return data, {", "raise KeyError('closing [/x] tag and [bold]loud[/bold] [columns]')\n    return data, {"))
    assert main(["run", str(yaml_graph)]) == 1
    out = capsys.readouterr().out
    assert "closing [/x] tag and [bold]loud[/bold] [columns]" in out
    assert "failed or blocked: consumer" in out
    config = yaml_graph / "producer" / "config.yaml"
    config.write_text(config.read_text() + "cli:\n  hidden: 'no'\n")
    assert main(["list", str(yaml_graph)]) == 1
    assert "[cli.hidden]" in capsys.readouterr().out


def test_run_summary_lists_baseline_fallbacks_instead_of_warnings(yaml_graph: Path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["run", str(yaml_graph)]) == 0
    captured = capsys.readouterr()
    assert "consumer: ran baseline (never run); ran bigger (never run); ran extra (never run); extra reads the " \
           "baseline of producer" in captured.out
    assert "falling back" not in captured.err
    assert main(["-v", "run", str(yaml_graph), "--force", "consumer"]) == 0
    assert "falling back to 'baseline'" in capsys.readouterr().err  # -v shows the warnings too


def test_status_json_keeps_stdout_pure_and_names_the_store_on_stderr(yaml_graph: Path, capsys):
    assert main(["status", str(yaml_graph), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["schema"] == 1
    assert f"store: {(yaml_graph / 'data').resolve()}" in captured.err.replace("\n", "")
