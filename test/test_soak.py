"""A short soak (``stseg bench soak``): revisits through the node processes
while the mapper and the accumulator are SIGKILLed and restarted, a CPU hog
beside them; nothing committed may change or go missing, and every image of
every closed revisit must be accounted for."""

from __future__ import annotations

from stseg_ros.bench.soak import SoakConfig, bench_soak, format_soak
from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset


def test_killed_and_restarted_nodes_lose_nothing(tmp_path):
    dataset = tmp_path / "room"
    generate_dataset(dataset, GenerateConfig(seed=7, revisits=1, rooms=1, frames=20),
                     progress=False)
    # seed 0 kills the mapper while the camera streams and twice while it maps,
    # and the accumulator in the middle of its open revisit
    result = bench_soak(SoakConfig(revisits=4, seconds=3.0, kill_probability=1.0, hogs=1,
                                   seed=0), dataset=dataset, progress=False)
    report = format_soak(result)
    assert result["kills"] == {"accumulator": 1, "mapper": 3}, report
    assert result["nothing_lost"], report
    assert result["integrity"] == "ok" and not result["epochs_changed"], report
    # the revisit open in the killed accumulator is reported lost; the others are epochs
    assert [r["why"] for r in result["revisits_lost"]] == [
        "its accumulator was killed while it was open"], report
    assert result["epochs"] == result["revisits_closed"] == 3, report
    assert result["exit_codes"] == {"accumulator": 0, "mapper": 0}, report
