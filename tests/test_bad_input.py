"""Bad input gets one clear line naming the option, file or field, and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import manifest, write_suite
from pytest_speedrun.data.dataset import write_shard

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(("option", "words"), [
    ("--speedrun-seeds=0", "--speedrun-seeds=0: must be positive"),
    ("--speedrun-repeats=-1", "--speedrun-repeats=-1: must be positive"),
    ("--speedrun-max-memory=lots", "--speedrun-max-memory=lots: not a size"),
    ("--speedrun-sandbox=docker", "--speedrun-sandbox=docker: unknown sandbox"),
    ("--speedrun-gpus=0,,1", "--speedrun-gpus=0,,1: expected distinct comma-separated GPU ids"),
    ("--speedrun-data=/nonexistent/dir", "--speedrun-data=/nonexistent/dir: not a directory"),
    ("--speedrun-hints=1+4", "--speedrun-hints=1+4"),
    ("--speedrun-python=/no/such/python", "--speedrun-python=/no/such/python: no such interpreter"),
    ("--speedrun-agent=gpt5", "unknown agent 'gpt5'"),
    ("--speedrun-suite=nosuchsuite", "--speedrun-suite=nosuchsuite: no such suite"),
])
def test_invalid_options_are_one_line_usage_errors(pytester: pytest.Pytester, suite: Path, option: str,
                                                   words: str) -> None:
    args = [option] if option.startswith("--speedrun-suite") else [f"--speedrun-suite={suite}", option]
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert words in err and "Traceback" not in err
    assert len([ln for ln in result.stderr.lines if ln.strip()]) == 1, result.stderr.lines


def test_an_invalid_ini_value_is_a_usage_error(pytester: pytest.Pytester, suite: Path) -> None:
    pytester.makeini("[pytest]\nspeedrun_agent = nonesuch\n")
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown agent 'nonesuch'" in result.stderr.str()


def test_an_unwritable_results_dir_is_refused_before_anything_runs(pytester: pytest.Pytester, suite: Path) -> None:
    blocker = pytester.path / "a-file"
    blocker.write_text("not a directory")
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=oracle",
                                           f"--speedrun-results={blocker / 'results'}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--speedrun-results=" in result.stderr.str() and "not writable" in result.stderr.str()


def _fineweb_suite(root: Path, data_ok: bool) -> tuple[Path, Path]:
    suite = write_suite(root / "suites")
    for path in suite.glob("*.toml"):
        path.write_text(path.read_text().replace('dataset = "tiny"', 'dataset = "fineweb"\ntrain_shards = 1'))
    data = root / "fw"
    data.mkdir()
    write_shard(data / "fineweb_train_000001.bin", list(range(5000)))
    write_shard(data / "fineweb_val_000000.bin", list(range(5000)))
    if not data_ok:
        with open(data / "fineweb_val_000000.bin", "r+b") as f:
            f.truncate(3000)
    return suite, data


def test_a_corrupt_data_shard_fails_the_item_in_one_line(pytester: pytest.Pytester, cache_dir: Path) -> None:
    suite, data = _fineweb_suite(pytester.path, data_ok=False)
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=oracle", "-k", "mini01",
                                           f"--speedrun-data={data}", f"--speedrun-cache-dir={cache_dir}",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["mini01: *fineweb_val_000000.bin: header says 5000 tokens*truncated or corrupt*"])
    assert "Traceback" not in result.stdout.str()


def test_missing_data_skips_with_the_command_to_fix_it(pytester: pytest.Pytester, cache_dir: Path,
                                                       monkeypatch) -> None:
    suite, _ = _fineweb_suite(pytester.path, data_ok=True)
    monkeypatch.setenv("PYTEST_SPEEDRUN_CACHE", str(pytester.path / "empty-cache"))
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=oracle", "-rs",
                                           "-k", "mini01", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no FineWeb data: run: pytest-speedrun fetch data --train-shards 1*"])


def test_a_missing_torchrun_fails_the_item_in_one_line(pytester: pytest.Pytester, suite: Path,
                                                       cache_dir: Path) -> None:
    fake_python = pytester.path / "python-without-torch"
    fake_python.write_text("#!/bin/sh\nexit 1\n")
    fake_python.chmod(0o755)
    for path in suite.glob("*.toml"):
        path.write_text(path.read_text().replace("nproc_per_node = 1", "nproc_per_node = 2"))
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=oracle", "-k", "mini01",
                                           f"--speedrun-python={fake_python}", f"--speedrun-cache-dir={cache_dir}",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["mini01: torchrun is not available to *python-without-torch*"])


def test_results_already_recorded_survive_a_later_failure(pytester: pytest.Pytester, suite: Path,
                                                          cache_dir: Path) -> None:
    (suite / "mini02.toml").write_text(manifest("mini02", "records/record_2.py", "records/missing.py"))
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=oracle",
                                           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider",
                                           "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    (record,) = [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    assert record["task"] == "mini01" and record["status"] == "passed"
