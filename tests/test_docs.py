"""The documentation works as written: every code block in README.md and docs/*.md whose fence says
``runnable`` (```` ```bash runnable ````, ```` ```python runnable ````) is run the way a reader would run it,
and the README stays one page with the test command CI runs.

Blocks of one page run in order in one working directory (a later block may use what an earlier one
wrote, as a reader following the page would), with this checkout's ``edgekit`` first on PATH and on
PYTHONPATH and the test session's isolated edgekit cache. A fence may say ``timeout=SECONDS``. A failing
block's test id names the file and line of its fence (``README.md:42``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
DEFAULT_TIMEOUT_S = 120
LANGUAGES = ("bash", "python")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int          # 1-based line of the opening fence
    language: str
    code: str
    timeout_s: int

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path, text: str | None = None) -> list[tuple[int, str, str]]:
    """(fence line, info string, code) of every fenced block of a Markdown page (CommonMark fences: a
    closing fence is the opening one's character, at least as long, with nothing after it)."""
    lines = (page.read_text() if text is None else text).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            i += 1
            continue
        fence, info, start = opening.group(1), opening.group(2).strip(), i
        i += 1
        body = []
        while i < len(lines):
            closing = FENCE.match(lines[i])
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence) \
                    and not closing.group(2).strip():
                break
            body.append(lines[i])
            i += 1
        blocks.append((start + 1, info, "\n".join(body) + "\n"))
        i += 1
    return blocks


def runnable_blocks(page: Path, text: str | None = None) -> list[Block]:
    """The blocks whose info string is ``LANGUAGE runnable [timeout=SECONDS]``."""
    found = []
    for line, info, code in code_blocks(page, text):
        words = info.split()
        if len(words) < 2 or words[0] not in LANGUAGES or "runnable" not in words[1:]:
            continue
        timeout = next((int(w.split("=", 1)[1]) for w in words if w.startswith("timeout=")), DEFAULT_TIMEOUT_S)
        found.append(Block(page, line, words[0], code, timeout))
    return found


ALL_BLOCKS = [block for page in PAGES for block in runnable_blocks(page)]


def test_the_extractor_finds_runnable_fences_only():
    page = ROOT / "example.md"
    text = ("```bash runnable\necho one\n```\n\n```bash\necho not runnable\n```\n"
            "````python runnable timeout=7\nprint('```')\n````\n```text runnable\nno language we run\n```\n")
    blocks = runnable_blocks(page, text)
    assert [(b.line, b.language, b.code, b.timeout_s) for b in blocks] == [
        (1, "bash", "echo one\n", DEFAULT_TIMEOUT_S), (8, "python", "print('```')\n", 7)]


def test_the_docs_have_runnable_blocks_and_none_runs_the_suite():
    assert {b.page.name for b in ALL_BLOCKS} >= {"README.md"}
    assert {b.language for b in ALL_BLOCKS} == set(LANGUAGES)
    recursive = [b.id for b in ALL_BLOCKS if "pytest" in b.code]
    assert not recursive, f"runnable blocks that would run the test suite from inside it: {recursive}"


def test_readme_is_one_page_with_the_test_command_ci_runs():
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= README_MAX_LINES
    bash_lines = [ln.strip() for _, info, code in code_blocks(readme) if info.split()[:1] == ["bash"]
                  for ln in code.splitlines()]
    assert "python -m pytest" in bash_lines  # .ci/run runs the test command written in README.md
    assert any(ln.startswith("python -m venv .venv") and 'pip install -e ".[all]"' in ln for ln in bash_lines)


def test_relative_links_point_at_files_in_the_tree():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, f"links to files that do not exist: {broken}"


@pytest.fixture(scope="module")
def page_dirs(tmp_path_factory) -> dict[Path, Path]:
    return {page: tmp_path_factory.mktemp(page.stem.lower()) for page in PAGES}


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_runnable_block(block: Block, page_dirs, edgekit_cache):
    work = page_dirs[block.page]
    script = work / f"block_{block.line}.{'py' if block.language == 'python' else 'sh'}"
    script.write_text(block.code)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT), "EDGEKIT_CACHE": str(edgekit_cache)}
    command = [sys.executable, str(script)] if block.language == "python" else \
        ["bash", "-euo", "pipefail", str(script)]
    try:
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=block.timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.id}: still running after {block.timeout_s} s (raise timeout= in its fence, or "
                    "keep the block fast)")
    assert done.returncode == 0, (f"{block.id} exited {done.returncode}\n--- stdout (tail)\n{done.stdout[-3000:]}"
                                  f"\n--- stderr (tail)\n{done.stderr[-3000:]}")
