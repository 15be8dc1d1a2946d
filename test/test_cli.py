"""The stseg command line: help for every verb, clear failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stseg_ros.cli import build_parser

VERBS = ["demo", "serve", "watch", "query", "generate", "run", "eval"]


def test_every_verb_has_help(capsys):
    parser = build_parser()
    listed = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert sorted(listed) == sorted(VERBS)
    for verb in VERBS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([verb, "--help"])
        assert exc.value.code == 0
        assert f"usage: stseg {verb}" in capsys.readouterr().out


def test_installed_entry_point_answers(python):
    stseg = Path(python).parent / "stseg"
    out = subprocess.run([str(stseg), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("stseg_ros ")


def test_map_server_refuses_a_foreign_file_and_exits_nonzero(tmp_path, python):
    bad = tmp_path / "foreign.json"
    bad.write_text('{"hello": "world"}')
    out = subprocess.run(
        [python, "-m", "stseg_ros.ros.map_server", "--ros-args", "-p", f"snapshot:={bad}"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "not a stseg_ros.snapshot file" in out.stderr
    assert bad.read_text() == '{"hello": "world"}'
