"""The README stands alone: what it names is in the repository, and its transcripts are true."""

import re
from pathlib import Path

from gqn.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_the_readme_names_no_path_outside_the_repository():
    assert re.findall(r"\.\./", README) == []  # nothing beside the repository
    assert re.findall(r"(?:^|[\s`(=\"'])(/[A-Za-z][\w.-]*/[\w./-]*)", README, re.M) == []  # nor absolute
    named = set(re.findall(r"(?<![\w/~.-])(?:examples|docs|tests|benchmarks|gqn)/[\w./-]*\w", README))
    assert "examples/reference" in named
    assert [p for p in sorted(named) if not (REPO / p).exists()] == []


def test_the_data_info_transcript_is_what_the_command_prints(capsys, monkeypatch):
    block = re.search(r"\$ gqn data info examples/reference\n(.*?)```", README, re.S)
    monkeypatch.chdir(REPO)
    assert main(["data", "info", "examples/reference"]) == 0
    assert capsys.readouterr().out == block.group(1)
