"""The stseg command line: help for every verb, clear failures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stseg_ros.cli import build_parser, main

VERBS = ["demo", "replay", "serve", "watch", "query", "generate", "import", "run", "eval", "bench",
         "train", "train-classifier"]


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


def test_bench_reports_both_generation_modes(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--frames", "2", "--revisits", "1", "--fast-scenes", "1",
                 "--workers", "0", "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frame_mode"]["frames_per_second"] > 0
    assert result["fast_mode"]["seconds_per_scene"] > 0
    assert "frames/s" in capsys.readouterr().out


def test_bench_reports_the_registration_error_distribution(tmp_path, capsys):
    out = tmp_path / "reg.json"
    assert main(["bench", "registration", "--seeds", "1", "--revisits", "2", "--quiet",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["generated"]["revisits"] == 1 and len(result["rows"]) == 1
    assert result["generated"]["rot_err_deg"]["max"] < 2.0           # seed 0 registers well
    assert result["generated"]["turned_accepted"] == 0
    assert "rotation error" in capsys.readouterr().out


def test_bench_registers_datasets_of_real_rescans_from_random_starts(tmp_path, capsys):
    from stseg_ros.datasets.generate import GenerateConfig, generate_dataset

    for seed in (0, 2):               # stand-ins for imported rescans, two rooms
        generate_dataset(tmp_path / f"rooms{seed}", GenerateConfig(seed=seed, revisits=2,
                                                                   frames=0), progress=False)
    out = tmp_path / "reg.json"
    assert main(["bench", "registration", "--seeds", "0", "--quiet", "--json", str(out),
                 "--real", str(tmp_path / "rooms0"), "--real", str(tmp_path / "rooms2")]) == 0
    result = json.loads(out.read_text())
    real = result["real"]
    assert real["revisits"] == 2 and real["within_target"] == 2 and real["accepted"] == 2
    assert result["real (different rooms)"]["pairs"] == 1
    assert "real: 2 revisits" in capsys.readouterr().out
    assert main(["bench", "registration", "--seeds", "0", "--real",
                 str(tmp_path / "nowhere")]) == 2


def test_train_writes_a_loadable_classifier_and_its_card(tmp_path, capsys):
    from stseg_ros.mapping.classifier import ClusterClassifier

    out = tmp_path / "model.npz"
    assert main(["train-classifier", "--out", str(out), "--seeds", "1", "--held-out", "0",
                 "--quiet"]) == 0
    card = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    assert card["clusters"] > 5 and 0 < card["train_accuracy"] <= 1
    model = ClusterClassifier.load(out)
    assert len(model.roots) == 100
    assert main(["train-classifier", "--out", str(tmp_path / "other.npz"), "--seeds", "1",
                 "--labelled", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "stseg train-classifier:" in capsys.readouterr().err
    assert not (tmp_path / "other.npz").exists()


def test_train_of_a_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"),
                 "--quiet"]) == 2
    assert "stseg train:" in capsys.readouterr().err
    foreign = tmp_path / "notes.db"
    foreign.write_bytes(b"not a memory" * 100)
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"),
                 "--revisits", str(foreign), "--quiet"]) == 2
    assert str(foreign) in capsys.readouterr().err
    assert foreign.read_bytes() == b"not a memory" * 100
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"),
                 "--revisits", str(foreign), "--revisit-every", "0", "--quiet"]) == 2
    assert "--revisit-every must be 1 or more" in capsys.readouterr().err


def test_a_second_demo_replaces_the_first_one_s_memory_and_recording(tmp_path):
    from stseg_ros.ros.demo import clear_demo_outputs

    out = tmp_path / "stseg_demo"
    (out / "outputs").mkdir(parents=True)
    (out / "outputs" / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (out / "memory.db").write_bytes(b"SQLite format 3\0")
    (out / "notes.txt").write_text("mine")
    clear_demo_outputs(out)
    assert not (out / "outputs").exists() and not (out / "memory.db").exists()
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("given", "state"), [("present", 0), ("Removed", 1), ("UNOBSERVED", 2),
                                              ("0", 0), ("2", 2)])
def test_query_takes_states_by_name_or_number(given, state):
    args = build_parser().parse_args(["query", "--state", given, "--state", "removed"])
    assert args.state == [state, 1]


@pytest.mark.parametrize("given", ["gone", "7", ""])
def test_query_refuses_an_unknown_state_naming_the_states(given, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["query", "--state", given])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not an object state: present (0), removed (1), unobserved (2)" in err


def test_query_help_names_the_states(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["query", "--help"])
    assert "present, removed or unobserved" in capsys.readouterr().out
