"""Commands the docs show exist with the options they show."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def sh_commands(name: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith("posnet ")]


@pytest.mark.parametrize("doc", ["settlement.md", "simulation.md", "clearing.md"])
def test_every_command_in_the_doc_parses(doc):
    from posnet.cli import build_parser

    commands = sh_commands(doc)
    assert commands
    for cmd in commands:
        argv = cmd.split()[1:]
        build_parser().parse_args(argv)  # exits (fails the test) on an unknown option


def test_the_simulation_doc_examples_run():
    for cmd in sh_commands("simulation.md"):
        if "--seeds 1..5000" in cmd or "--seeds 1..200" in cmd:
            cmd = cmd.replace("1..5000", "1..2").replace("1..200", "1..2").replace("--transactions 500", "--transactions 50")
        p = subprocess.run([sys.executable, "-m", "posnet", *cmd.split()[1:]], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (cmd, p.stdout[-2000:], p.stderr[-2000:])
