"""Every command docs/terminal.md shows runs, in its order, on a fresh demo network, and ends as the
page says: refused where a comment says so, killed where it says power cut, else successfully."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import posnet_lines

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "terminal.md"
README = Path(__file__).resolve().parents[2] / "README.md"
README_SECTION = "## The terminal as a device"
STARTED_BY_THE_FIXTURE = ("posnet init", "posnet up")


def doc_commands(text: str | None = None) -> list[tuple[str, str]]:
    """(command, comment) of every `posnet` line in the page's sh blocks."""
    return posnet_lines(DOC.read_text(encoding="utf-8") if text is None else text)


def expected_exit(comment: str) -> int:
    if comment.startswith("refused"):
        return 1
    if comment.startswith("power cut"):
        return -signal.SIGKILL
    return 0


def test_the_page_has_the_issues_commands():
    names = {c.split()[2] if c.startswith("posnet pos") else c.split()[1] for c, _ in doc_commands()}
    for name in ("load-paper", "remove-paper", "battery", "power-cut", "power-on", "shock", "open-case", "unlock",
                 "reprint", "detail", "totals", "load-tmk", "acquirer", "ui", "status"):
        assert name in names or any(name in c for c, _ in doc_commands()), name


def test_every_command_of_the_terminal_page_runs_as_it_says(network, tmp_path):
    env = {**os.environ, "POSNET_CONFIG": str(network.path)}
    ran = 0
    for command, comment in doc_commands():
        if command.startswith(STARTED_BY_THE_FIXTURE):
            continue
        argv = command.split()[1:]
        p = subprocess.run([sys.executable, "-m", "posnet", *argv], capture_output=True, text=True, env=env,
                           cwd=tmp_path, input="q\n", timeout=120)
        assert p.returncode == expected_exit(comment), (command, p.returncode, p.stdout[-1500:], p.stderr[-1500:])
        ran += 1
    assert ran >= 40
    # Then the README's short version of the page.
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index(README_SECTION):]
    section = section[: section.index("\n## ", len(README_SECTION))]
    readme_commands = doc_commands(section)
    assert len(readme_commands) == 5
    for command, comment in readme_commands:
        p = subprocess.run([sys.executable, "-m", "posnet", *command.split()[1:]], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=120)
        assert p.returncode == 0, (command, p.stdout[-1500:], p.stderr[-1500:])
    assert (tmp_path / "roll.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "slip.png").read_bytes().startswith(b"\x89PNG")
    assert b"\x1dV" in (tmp_path / "slip.escpos").read_bytes()
    assert (tmp_path / "tmk-10000001.json").exists()
