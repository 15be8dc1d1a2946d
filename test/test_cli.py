"""The stseg command line: help for every verb, clear failures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stseg_ros.cli import build_parser, main

VERBS = ["demo", "replay", "serve", "watch", "query", "generate", "import", "run", "eval", "bench",
         "train", "train-classifier", "calibrate-changes"]


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


def test_bench_history_reports_each_revisit_s_stages_and_memory(tmp_path, capsys):
    out = tmp_path / "history.json"
    assert main(["bench", "history", "--revisits", "3", "--segmenter", "geometric",
                 "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["per_revisit"]
    assert [r["revisit"] for r in rows] == [1, 2, 3] and all(r["registered"] for r in rows)
    assert {"registration", "segmentation", "association", "memory"} <= set(rows[0]["seconds"])
    assert rows[-1]["memory_file_mib"] > rows[0]["memory_file_mib"] > 0
    assert all(r["resident_mib"] > 0 for r in rows) and rows[-1]["objects_known"] > 0
    # the first revisit defines the map; the later ones were compared with it
    assert rows[0]["reference_points"] == 0 and rows[0]["matched_against"] == 0
    assert all(r["reference_points"] > 1000 and r["matched_against"] > 0 for r in rows[1:])
    printed = capsys.readouterr().out
    assert "seconds per stage" in printed and "\n      3 " in printed


def test_bench_registers_datasets_of_real_rescans_from_random_starts(tmp_path, capsys):
    from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset

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


@pytest.fixture
def bad(tmp_path):
    """Things a user may point a verb at by mistake, and one usable cloud."""
    import numpy as np

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "foreign.json").write_text('{"hello": 1}\n')
    (tmp_path / "weights.pt").write_bytes(b"\x80\x02cbuiltins\nexec\nq\x00.")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "scan.npz", xyz=rng.uniform(0, 3, (500, 3)).astype(np.float32))
    return tmp_path


# (verb and arguments, the path or value the one-line message must name); {X}: bad / X
BAD_INPUTS = [
    (["demo", "--out", "{notes.txt}"], "notes.txt"),
    (["serve", "--snapshot", "{foreign.json}"], "foreign.json"),
    (["replay", "{missing}"], "missing"),
    (["replay", "{empty}"], "empty"),
    (["replay", "{notes.txt}"], "notes.txt"),
    (["replay", "{scan.npz}", "--record", "{empty}"], "empty"),
    (["watch", "--node", "no such node!", "--duration", "1"], "no such node!"),
    (["query", "--node", "no such node!", "--timeout", "1"], "no such node!"),
    (["generate", "--out", "{notes.txt}/data", "--seed", "0", "--frames", "0"], "notes.txt"),
    (["import", "scannet", "{missing}", "--out", "{new}"], "missing"),
    (["import", "scannet", "{empty}", "--out", "{new}"], "empty"),
    (["import", "scannet", "{empty}", "--out", "{notes.txt}"], "notes.txt"),
    (["run", "{missing}", "--out", "{new}"], "missing"),
    (["run", "{empty}", "--out", "{new}"], "empty"),
    (["run", "{notes.txt}", "--out", "{new}"], "notes.txt"),
    (["run", "{scan.npz}", "--out", "{notes.txt}"], "notes.txt"),
    (["run", "{scan.npz}", "--out", "{new}", "--config", "{foreign.json}"], "foreign.json"),
    (["run", "{scan.npz}", "--out", "{new}", "--config", "{empty}"], "empty"),
    (["run", "{scan.npz}", "--out", "{new}", "--db", "{empty}"], "empty"),
    (["run", "{scan.npz}", "--out", "{new}", "--db", "{notes.txt}", "--segmenter",
      "geometric"], "notes.txt"),
    (["run", "{scan.npz}", "--out", "{new}", "--weights", "{weights.pt}"], "weights.pt"),
    (["run", "{scan.npz}", "--out", "{new}", "--weights", "{empty}"], "empty"),
    (["eval", "{missing}", "{empty}"], "missing"),
    (["eval", "{empty}", "{empty}", "--json", "{empty}"], "empty"),
    (["bench", "registration", "--seeds", "0", "--real", "{empty}"], "empty"),
    (["bench", "segmentation", "--weights", "{weights.pt}"], "weights.pt"),
    (["bench", "--json", "{missing}/out.json"], "missing"),
    (["train", "{missing}", "--out", "{new}"], "missing"),
    (["train", "{empty}", "--out", "{notes.txt}"], "notes.txt"),
    (["train", "{empty}", "--out", "{new}", "--revisits", "{foreign.json}"], "foreign.json"),
    (["train", "{empty}", "--out", "{new}", "--fused", "{missing}", "{new}"], "missing"),
    (["train", "{empty}", "--out", "{new}", "--init", "{weights.pt}"], "weights.pt"),
    (["train", "{empty}", "--out", "{new}", "--init", "{missing}.pt"], "missing"),
    (["train", "{empty}", "--out", "{new}", "--epoch-counts", "1,two"], "1,two"),
    (["train", "{empty}", "--out", "{new}", "--epoch-counts", "0,3", "--epoch-weights", "1,1"],
     "whole numbers of 1 or more"),
    (["train", "{empty}", "--out", "{new}", "--epoch-weights", "1"], "--epoch-weights"),
    (["train-classifier", "--out", "{missing}/model.npz"], "missing"),
    (["train-classifier", "--out", "{new}.npz", "--labelled", "{empty}"], "empty"),
]


def _filled(args: list[str], root: Path) -> list[str]:
    return [a.replace("{", f"{root}/").replace("}", "") for a in args]


@pytest.mark.parametrize(("args", "named"), BAD_INPUTS, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_every_verb_reports_a_bad_input_in_one_line_naming_it(bad, capsys, args, named):
    assert main(_filled(args, bad)) != 0
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert named in last and (last.startswith(f"stseg {args[0]}: ")
                              or last.startswith("map_server: ")), err
    assert (bad / "notes.txt").read_text() == "hello\n"         # foreign files untouched
    assert (bad / "foreign.json").read_text() == '{"hello": 1}\n'


def test_debug_shows_the_traceback_instead(bad, python):
    args = _filled(["run", "{scan.npz}", "--out", "{notes.txt}"], bad)
    plain = subprocess.run([python, "-m", "stseg_ros.cli", *args], capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip() == f"stseg run: {bad}/notes.txt: --out must be a folder, " \
                                   "and this is a file"
    for where in (["--debug", *args], [*args, "--debug"]):
        shown = subprocess.run([python, "-m", "stseg_ros.cli", *where], capture_output=True,
                               text=True, timeout=120)
        assert shown.returncode != 0 and "Traceback (most recent call last)" in shown.stderr
        assert "--out must be a folder" in shown.stderr


def test_an_unexpected_error_is_one_line_with_a_hint_and_status_1(monkeypatch, capsys):
    import stseg_ros.cli as cli

    def broken(args):
        raise TypeError("an internal mistake")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["eval"].set_defaults(func=broken)  # noqa: SLF001
    assert main(["eval", "a", "b"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("stseg eval: unexpected TypeError: an internal mistake (rerun with --debug "
                   "for the traceback)")
