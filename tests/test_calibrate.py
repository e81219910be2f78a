from pathlib import Path

import pytest

from fakes import write_suite
from pytest_speedrun.data.dataset import ensure_tiny_dataset
from pytest_speedrun.errors import CalibrationError
from pytest_speedrun.pipeline import calibrate
from pytest_speedrun.pipeline.calibrate import Calibrator, fingerprint
from pytest_speedrun.pipeline.item import RunSettings
from pytest_speedrun.results.noise import ASSUMED_CV, Spread
from pytest_speedrun.tasks.manifest import load_task


@pytest.fixture
def calibrator(tmp_path: Path, cache_dir: Path) -> Calibrator:
    settings = RunSettings(dataset=ensure_tiny_dataset(cache_dir), threads=1)
    return Calibrator(cache_dir=tmp_path / "cache", settings=settings)


def _runs(cal: Calibrator) -> int:
    return len(list((cal.cache_dir / "calibration").glob("*/run*.log")))


def test_calibration_measures_both_records_and_caches_them(tmp_path: Path, calibrator: Calibrator) -> None:
    task = load_task(write_suite(tmp_path, works=(0.4, 0.2))/ "mini01.toml")
    ref = calibrator.reference(task)
    assert 350 < ref.t_start_ms < 600 and 150 < ref.t_target_ms < 350
    assert ref.source.startswith("calibrated:")
    assert _runs(calibrator) == 2
    assert calibrator.reference(task) == ref  # cached: no new runs
    assert _runs(calibrator) == 2


def test_references_carry_the_start_records_cpu_and_pause_figures_and_older_entries_are_re_measured(
        tmp_path: Path, calibrator: Calibrator) -> None:
    import json

    # 0.2 s of CPU before the first step line: well above the pump's reading resolution (a clock tick, and a
    # figure at most CPU_EVERY_S old), which a record that starts in 60 ms is not (it once read 0.0 in CI).
    task = load_task(write_suite(tmp_path, works=(0.4, 0.2), pre_cpu_s=0.2) / "mini01.toml")
    ref = calibrator.reference(task)
    assert ref.start_pre_step_cpu_s is not None and 0.1 < ref.start_pre_step_cpu_s <= ref.start_pre_step_s + 0.05
    assert ref.start_val_pause_s is not None and ref.start_val_pause_s >= 0
    for entry in (calibrator.cache_dir / "calibration").glob("*.json"):  # as written before these two figures
        data = json.loads(entry.read_text())
        if "pre_step_cpu_s" in data:
            del data["pre_step_cpu_s"], data["val_pause_s"]
            entry.write_text(json.dumps(data))
    logs = sorted((calibrator.cache_dir / "calibration").glob("*/run0.log"))
    before = [p.stat().st_mtime_ns for p in logs]
    again = Calibrator(cache_dir=calibrator.cache_dir, settings=calibrator.settings)
    assert again.reference(task).start_pre_step_cpu_s is not None
    assert [p.stat().st_mtime_ns for p in logs] != before  # measured again, not read with the figure missing


def test_force_re_measures_entries_older_than_the_session(tmp_path: Path, calibrator: Calibrator) -> None:
    import time

    task = load_task(write_suite(tmp_path, works=(0.2, 0.1)) / "mini01.toml")
    first = calibrator.reference(task)
    forced = Calibrator(cache_dir=calibrator.cache_dir, settings=calibrator.settings, force_before=time.time())
    logs = sorted((calibrator.cache_dir / "calibration").glob("*/run0.log"))
    before = [p.stat().st_mtime_ns for p in logs]
    assert forced.reference(task).source == first.source
    assert [p.stat().st_mtime_ns for p in logs] != before


def test_a_re_measured_entry_keeps_the_runs_it_replaced_and_the_scores_spread_counts_them(
        tmp_path: Path, calibrator: Calibrator) -> None:
    """Back-to-back runs understate how far the machine moves between sessions: the spread a score uses pools
    each entry's earlier measurements too; the session check's (back-to-back) does not."""
    import json
    import time

    task = load_task(write_suite(tmp_path, works=(0.2, 0.1)) / "mini01.toml")
    calibrator.reference(task)
    entries = (calibrator.cache_dir / "calibration").glob("*.json")
    first = {p: json.loads(p.read_text())["train_times_ms"] for p in entries}
    forced = Calibrator(cache_dir=calibrator.cache_dir, settings=calibrator.settings, force_before=time.time())
    ref = forced.reference(task)
    for path, runs in first.items():
        assert json.loads(path.read_text())["earlier_ms"] == runs
    fid = ref.source.split(":", 1)[1]
    assert forced.spread(fid, over_time=False) == Spread(ASSUMED_CV, None)  # one run per entry: no df back to back
    assert forced.spread(fid).df == 2 and ref.spread == forced.spread(fid)  # two entries of two runs each


def test_manifest_reference_needs_no_runs(tmp_path: Path, calibrator: Calibrator) -> None:
    suite = write_suite(tmp_path)
    path = suite / "mini01.toml"
    path.write_text(path.read_text().replace('source = "calibrate"', 'source = "manifest"'))
    ref = calibrator.reference(load_task(path))
    assert (ref.t_start_ms, ref.t_target_ms, ref.source) == (1000, 500, "manifest")
    assert _runs(calibrator) == 0


def test_a_record_that_misses_the_target_fails_calibration_clearly(tmp_path: Path, calibrator: Calibrator) -> None:
    task = load_task(write_suite(tmp_path, works=(0.1, 0.05), loss=2.5) / "mini01.toml")
    with pytest.raises(CalibrationError, match=r"calibrating record_1.py for mini01 failed: invalid \(val_loss 2.5000"):
        calibrator.reference(task)


def test_target_not_faster_here_is_reported(tmp_path: Path, calibrator: Calibrator) -> None:
    task = load_task(write_suite(tmp_path, works=(0.1, 0.3)) / "mini01.toml")
    with pytest.raises(CalibrationError, match="not less than the start record"):
        calibrator.reference(task)
    assert _runs(calibrator) == 6  # after measuring both records again, 3 runs each


def test_a_one_off_slow_run_is_measured_again_before_the_task_is_unscorable(tmp_path: Path, calibrator: Calibrator,
                                                                           monkeypatch) -> None:
    # Runs are counted: the other retry, of a run the machine disturbed, would add one on a noisy machine (a CI
    # run saw 5), so it is off here; tests/test_reference_check.py covers it.
    monkeypatch.setattr(calibrate, "RETRIES_DISTURBED", 0)
    suite = write_suite(tmp_path, works=(0.6, 0.1))
    target = suite / "records" / "record_2.py"
    counter = tmp_path / "target-runs"
    slow_first = (f"import os\nn = int(open({str(counter)!r}).read()) if os.path.exists({str(counter)!r}) else 0\n"
                  f"open({str(counter)!r}, 'w').write(str(n + 1))\nWORK_S = 1.2 if n == 0 else 0.1\n")
    target.write_text(target.read_text().replace("WORK_S = 0.1\n", slow_first))  # a hiccup on its first run
    ref = calibrator.reference(load_task(suite / "mini01.toml"))
    assert counter.read_text() == "4" and _runs(calibrator) == 6
    assert 50 < ref.t_target_ms < 400 < ref.t_start_ms  # the medians of 3 runs each


def test_fingerprint_depends_on_threads_and_process_count() -> None:
    assert fingerprint(1, 1) != fingerprint(2, 1)
    assert fingerprint(1, 1) != fingerprint(1, 8)
    assert fingerprint(2, 1) == fingerprint(2, 1)


def test_manifest_tasks_use_calibrated_times_only_when_this_machine_has_them(tmp_path: Path, cache_dir: Path,
                                                                           capsys) -> None:
    from pytest_speedrun import cli

    suite = write_suite(tmp_path, works=(0.3, 0.15))
    path = suite / "mini01.toml"
    path.write_text(path.read_text().replace('source = "calibrate"', 'source = "manifest"'))
    task = load_task(path)
    settings = RunSettings(dataset=ensure_tiny_dataset(cache_dir), threads=1)
    cal = Calibrator(cache_dir=tmp_path / "cache", settings=settings)
    assert cal.reference(task).source == "manifest"  # nothing measured here yet: the paper's figures
    assert cli.main(["calibrate", "--suite", str(suite), "--runs", "2", "--threads", "1",
                     "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mini01: t_i ") and "median of 2" in out
    ref = cal.reference(task)
    assert ref.source.startswith("calibrated:") and 250 < ref.t_start_ms < 450


def test_calibrate_command_rejects_an_unknown_task(tmp_path: Path, capsys) -> None:
    from pytest_speedrun import cli

    suite = write_suite(tmp_path)
    assert cli.main(["calibrate", "--suite", str(suite), "-k", "task99", "--cache-dir", str(tmp_path / "c")]) == 1
    assert "no task of suite" in capsys.readouterr().err


def test_under_slurm_the_fingerprint_is_the_job_kind_not_the_submitting_machine(monkeypatch) -> None:
    h100 = {"launcher": "slurm", "partition": "gpu", "extra": '[["constraint", "h100"]]', "gpus": "8"}
    a100 = dict(h100, extra='[["constraint", "a100"]]')
    on_login_node = fingerprint(8, 8, placement=h100)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # another submitting machine, other local devices
    monkeypatch.setattr("pytest_speedrun.pipeline.calibrate.gpu_inventory", lambda: "NVIDIA L4, 550.54")
    assert fingerprint(8, 8, placement=h100) == on_login_node
    assert fingerprint(8, 8, placement=a100) != on_login_node
    assert fingerprint(8, 8) != on_login_node
