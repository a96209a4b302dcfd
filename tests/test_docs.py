"""The code in the documentation runs.

Every Markdown page (``README.md`` and ``docs/*.md``) becomes one Python script made of
its fenced blocks, in page order, run in a fresh folder that holds a copy of
``graphs/``:

- a ```` ```python ```` block is executed;
- a block whose info string has ``file=PATH`` (```` ```yaml file=hello/config.yaml ````)
  is written to ``PATH`` at that point of the page instead;
- a ```` ```python ```` block written as a doctest (``>>>`` prompts) is checked with
  :mod:`doctest`, output included, in the page's namespace;
- a ```` ```python no-run ```` block, and blocks in any other language, are skipped.

The script keeps the page's line numbers, so a traceback points at the Markdown line.
"""

from __future__ import annotations

import doctest
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
# Pages whose fragments are not self-contained yet (they use names defined nowhere on
# the page). Their owners should make them runnable or tag the fragments ``no-run``;
# remove an entry once its page passes.
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its info string, first content line (1-based) and text."""

    info: str
    line: int
    text: str

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def file(self) -> str | None:
        found = re.search(r"\bfile=(\S+)", self.info)
        return found.group(1) if found else None

    @property
    def runs(self) -> bool:
        return self.language == "python" and self.file is None and "no-run" not in self.info.split()


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text (nested longer fences are kept whole)."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ {{0,{indent}}}{fence}`*\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), len(lines))
        body = [line[indent:] if line[:indent].strip() == "" else line for line in lines[i + 1:end]]
        found.append(Block(opening["info"].strip(), i + 2, "\n".join(body) + "\n"))
        i = end + 1
    return found


def run_doctest(text: str, namespace: dict[str, object], name: str, line: int) -> None:
    """Check one ``>>>`` block in ``namespace``; raise with doctest's report if it fails."""
    test = doctest.DocTestParser().get_doctest(text, namespace, name, name, line - 1)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=report.append, clear_globs=False)
    namespace.update(test.globs)  # DocTest works on a copy; later blocks see its names
    if runner.failures:
        raise AssertionError("".join(report))


PRELUDE = ("from pathlib import Path as _DocPath; "
           "from tests_doc_support import run_doctest as _doc_doctest")


def script(text: str) -> str:
    """The page as one Python script whose line numbers match the page."""
    out = [PRELUDE]
    for block in blocks(text):
        out.extend([""] * (block.line - 1 - len(out)))
        if block.runs and block.text.lstrip().startswith(">>>"):
            out.append(f"_doc_doctest({block.text!r}, globals(), __file__, {block.line})")
        elif block.runs:
            out.extend(block.text.splitlines())
        elif block.file is not None:
            target = block.file
            out.append(f"_DocPath({target!r}).parent.mkdir(parents=True, exist_ok=True); "
                       f"_DocPath({target!r}).write_text({block.text!r})")
    return "\n".join(out) + "\n"


def page_id(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


class TestExtraction:
    def test_blocks_keep_line_numbers_and_info(self) -> None:
        text = "# t\n\n```python\nx = 1\n```\n\n```yaml file=a/b.yaml\nk: v\n```\n```python no-run\nboom\n```\n"
        found = blocks(text)
        assert [(b.info, b.line, b.text) for b in found] == [
            ("python", 4, "x = 1\n"), ("yaml file=a/b.yaml", 8, "k: v\n"), ("python no-run", 11, "boom\n")]
        assert [b.runs for b in found] == [True, False, False]
        assert found[1].file == "a/b.yaml"

    def test_script_lines_match_the_page(self) -> None:
        text = "intro\n\n```python\nvalue = 41\n```\n\ntext\n```python\nvalue += 1\n```\n"
        lines = script(text).splitlines()
        assert lines[3] == "value = 41"
        assert lines[8] == "value += 1"
        namespace: dict[str, object] = {}
        exec(script(text).replace(PRELUDE, ""), namespace)  # noqa: S102 - our own test input
        assert namespace["value"] == 42

    def test_doctest_blocks_compare_output(self) -> None:
        namespace: dict[str, object] = {}
        run_doctest(">>> 1 + 1\n2\n", namespace, "page.md", 3)
        with pytest.raises(AssertionError, match="Expected:\n    3\nGot:\n    2"):
            run_doctest(">>> 1 + 1\n3\n", namespace, "page.md", 3)

    def test_doctest_names_reach_later_blocks(self) -> None:
        namespace: dict[str, object] = {}
        run_doctest(">>> answer = 42\n", namespace, "page.md", 1)
        assert namespace["answer"] == 42

    def test_longer_fences_hold_shorter_ones(self) -> None:
        text = "````markdown\n```python\nnot code\n```\n````\n"
        assert [(b.language, b.runs) for b in blocks(text)] == [("markdown", False)]


def _runnable(page: Path) -> bool:
    # (this module is also imported as a helper from a copy elsewhere, where pages are absent)
    return page.exists() and any(b.runs or b.file for b in blocks(page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)], ids=page_id)
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    text = page.read_text(encoding="utf-8")
    shutil.copytree(REPO / "graphs", tmp_path / "graphs",
                    ignore=shutil.ignore_patterns("data", "__pycache__", "config.state.json"))
    shutil.copy(Path(__file__), tmp_path / "tests_doc_support.py")
    source = tmp_path / f"{page.name}.py"
    source.write_text(script(text), encoding="utf-8")
    done = subprocess.run([sys.executable, source.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, f"{page_id(page)} failed (line numbers are the page's):\n{done.stderr[-4000:]}"
