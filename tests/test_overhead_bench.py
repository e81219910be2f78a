"""benchmarks/overhead.py's arithmetic: paired differences, /proc and importtime parsing, the stage table's figures.
Nothing here times anything."""

from __future__ import annotations

from types import ModuleType

import pytest

from fakes import load_benchmark


@pytest.fixture(scope="module")
def oh() -> ModuleType:
    return load_benchmark("overhead")


def test_paired_summary_takes_differences_per_pair_not_of_medians(oh: ModuleType) -> None:
    direct = [28.0, 30.0, 29.0, 27.0, 31.0]
    through = [33.38, 33.15, 28.75, 27.94, 33.33]
    s = oh.paired_summary(direct, through)
    assert s["diffs"] == pytest.approx([5.38, 3.15, -0.25, 0.94, 2.33])
    assert s["median"] == pytest.approx(2.33)
    assert (s["min"], s["max"]) == (pytest.approx(-0.25), pytest.approx(5.38))
    assert s["iqr"] == pytest.approx(3.15 - 0.94)  # inclusive quartiles of 5 values: the 2nd and 4th
    assert s["mad"] == pytest.approx(1.39)  # |diffs - 2.33| = 3.05, 0.82, 2.58, 1.39, 0 -> median 1.39
    assert s["ratio_of_medians"] == pytest.approx(33.15 / 29.0)


def test_paired_summary_of_one_pair_has_no_spread(oh: ModuleType) -> None:
    s = oh.paired_summary([10.0], [11.5])
    assert (s["median"], s["iqr"], s["mad"]) == (pytest.approx(1.5), 0.0, 0.0)


def test_paired_summary_refuses_unpaired_lists(oh: ModuleType) -> None:
    with pytest.raises(ValueError, match="needs pairs"):
        oh.paired_summary([1.0, 2.0], [1.0])


def test_parse_proc_stat_reads_own_and_reaped_children_cpu(oh: ModuleType) -> None:
    # pid (comm with ") " inside) state ... utime=250 stime=30 cutime=1700 cstime=60 (fields 14-17)
    fields = ["Z", "1", "1", "1", "0", "-1", "4194304", "10", "0", "0", "0", "250", "30", "1700", "60"] + ["0"] * 30
    text = "4242 (py) thon) " + " ".join(fields)
    state, own, children = oh.parse_proc_stat(text)
    assert state == "Z"
    assert own == pytest.approx(280 / oh.CLK_TCK)
    assert children == pytest.approx(1760 / oh.CLK_TCK)


def test_parse_importtime_skips_the_header_and_keeps_nesting_names(oh: ModuleType) -> None:
    stderr = ("import time: self [us] | cumulative | imported package\n"
              "import time:       120 |        120 |   _io\n"
              "import time:      3000 |      45000 | pytest_speedrun.plugin\n"
              "something else\n")
    assert oh.parse_importtime(stderr) == [("_io", 120, 120), ("pytest_speedrun.plugin", 3000, 45000)]


def _record(**over: object) -> dict:
    rec = {
        "t_enter": 100.2, "t_pytest_imported": 100.4, "t_plugin_imported": 100.7, "t_patched": 100.7,
        "t_main_start": 100.7, "t_main_end": 131.0,
        "first": {"pytest_configure": 101.0, "pytest_sessionstart": 101.1},
        "seconds": {"item.write_atomic": 0.01, "store.write_diff": 0.02, "runner.kill_run": 0.003},
        "executions": [{"log": "/r/run.log", "wall_s": 20.0, "queued_s": 0.0,
                        "cpu": {"wall_s": 19.5, "cpu_s": 17.0}, "train_time_s": 10.0, "first_step_s": 4.0,
                        "last_line_s": 18.5, "first_step_cpu_s": 3.5, "observed_train_s": 10.0}],
        "runs": [{"log": "/cal/control.log", "seconds": 5.0},
                 {"log": "/r/run.log", "seconds": 20.1, "pump_cpu_s": 0.2, "reaped_run_cpu_s": 17.2,
                  "final": True, "pump_startup_cpu_s": 0.05}],
    }
    rec.update(over)
    return rec


def test_flatten_splits_the_run_into_pump_script_and_tail(oh: ModuleType) -> None:
    v = oh.flatten(_record(), launched=100.0, ended=131.1)
    assert v["total"] == pytest.approx(31.1)
    assert v["interp_start"] == pytest.approx(0.2)
    assert v["pytest_startup"] == pytest.approx(0.3)
    assert v["configure_all"] == pytest.approx(0.1)
    assert v["item_run_s"] == pytest.approx(20.1)  # the item's own run, not the control run before it
    assert v["control_runs"] == 1.0
    assert v["pump_outside"] == pytest.approx(0.5)  # the run's wall outside the command's
    assert v["command_other"] == pytest.approx(18.5 - 4.0 - 10.0)
    assert v["command_tail"] == pytest.approx(1.0)
    assert v["outside_run"] == pytest.approx(31.1 - 20.1)
    assert v["solution_files"] == pytest.approx(0.03)
    assert v["pump_cpu_s"] == pytest.approx(0.2)


def test_flatten_without_a_run_leaves_the_run_rows_empty(oh: ModuleType) -> None:
    v = oh.flatten(_record(executions=[], runs=[]), launched=100.0, ended=131.1)
    assert v["item_run_s"] is None and "pump_cpu_s" not in v and "outside_run" not in v


def test_top_costs_counts_a_parents_unexplained_rest(oh: ModuleType) -> None:
    profile = {key: 0.0 for _, _, key in oh.ROWS}
    profile.update({"pytest_sessionfinish": 0.7, "pytest_terminal_summary": 0.65, "summary.summary_lines": 0.01,
                    "interp_start": 0.15, "train_time_s": 10.0})
    top = oh.top_costs([profile], n=3)
    assert "pytest_terminal_summary" in top[0] and "the rest" in top[0] and top[0].strip().startswith("0.640")
    assert all("train_time" not in line for line in top)  # the script's own time is not the harness's
