"""Scripts cut from pinned logs, on generated stand-in logs (never real ones): the manifest fields, `fetch records
--from` on a tree laid out like a modded-nanogpt clone (a decoy with the right name and the wrong content is
refused), the download path, and the bundle that puts a script beside its companion files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pytest_speedrun import cli
from pytest_speedrun.errors import MissingInput, TaskError
from pytest_speedrun.tasks.fetch import FetchError, cached_path, fetch_script, resolve_task
from pytest_speedrun.tasks.log_cut import MAIN, sections
from pytest_speedrun.tasks.manifest import load_suite, load_task
from pytest_speedrun.tasks.record_import import import_records, suite_pins

SEP = "=" * 100
DASHES = "-" * 40
COMMIT = "f" * 40
BASE = f"https://raw.githubusercontent.com/owner/nanogpt/{COMMIT}/"


def stand_in_log(record: int, kernels: bool) -> bytes:
    code = f"# stand-in record {record}\nimport os\nprint({record})\n" * 3
    if kernels:
        code += f"\n\n{DASHES}\n# triton_kernels.py\n{DASHES}\n\n" + f"def k():\n    return {record}\n"
    return (f"{code}\n{SEP}\nstep:10/10 val_loss:3.2700 train_time:{1000 - record}ms step_avg:1.00ms\n").encode()


LOGS = {1: stand_in_log(1, False), 2: stand_in_log(2, True), 3: stand_in_log(3, True)}
PATHS = {k: f"records/track_1_short/2026-0{k}-01_Rec{k}/run.txt" for k in LOGS}


def pin(k: int, section: str) -> str:
    log = LOGS[k]
    body = sections(log.decode())[section].encode()
    return (f'url = "{BASE}{PATHS[k]}"\nbytes = {len(log)}\nlog_sha256 = "{hashlib.sha256(log).hexdigest()}"\n'
            f'cut = "{section}"\nsha256 = "{hashlib.sha256(body).hexdigest()}"\n')


def end(key: str, k: int) -> str:
    text = f"[{key}]\nrecord = {k}\ntrain_time_ms = {1000 - k}\n\n[{key}.script]\n{pin(k, MAIN)}"
    if k > 1:
        text += f'\n[{key}.script.files."triton_kernels.py"]\n{pin(k, "triton_kernels.py")}'
    return text


def cut_suite(root: Path) -> Path:
    suite = root / "lad"
    suite.mkdir(parents=True)
    for a, b in ((1, 2), (2, 3)):
        (suite / f"t1_{a:03d}_{b:03d}.toml").write_text(
            f'id = "t1_{a:03d}_{b:03d}"\nsuite = "lad"\ntrack = 1\ntarget_val_loss = 3.28\n\n{end("start", a)}\n'
            f'{end("target", b)}\n[launch]\nnproc_per_node = 8\ntimeout_s = 60\n')
    return suite


def clone(root: Path, decoy_for: int | None = None, tree: Path | None = None) -> Path:
    """A tree laid out like the upstream clone; `decoy_for`: that record's log has the right name and size but
    other content."""
    tree = tree or root / "modded-nanogpt"
    for k, path in PATHS.items():
        f = tree / path
        f.parent.mkdir(parents=True, exist_ok=True)
        data = bytearray(LOGS[k])
        if k == decoy_for:
            data[2] ^= 1  # same size, same name, one byte off inside the script
        f.write_bytes(bytes(data))
    return tree


def test_cut_pins_load_with_their_companions(tmp_path: Path) -> None:
    task = load_suite(cut_suite(tmp_path))[1]
    assert task.track == 1 and task.start.script.cut == MAIN and task.start.script.log_sha256
    assert [name for name, _ in task.target.script.files] == ["triton_kernels.py"]


@pytest.mark.parametrize("drop, key", [("log_sha256", "log_sha256"), ("bytes", "bytes")])
def test_a_cut_pin_missing_a_field_is_a_one_line_error(tmp_path: Path, drop: str, key: str) -> None:
    path = cut_suite(tmp_path) / "t1_001_002.toml"
    path.write_text("\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith(drop + " =")))
    with pytest.raises(TaskError, match=rf"key 'start.script.{key}': missing"):
        load_task(path)


def test_a_companion_must_be_a_plain_python_file_name(tmp_path: Path) -> None:
    path = cut_suite(tmp_path) / "t1_002_003.toml"
    path.write_text(path.read_text().replace('files."triton_kernels.py"', 'files."../evil.py"', 1))
    with pytest.raises(TaskError, match="plain .py file name"):
        load_task(path)


def test_a_track_outside_1_to_3_is_refused(tmp_path: Path) -> None:
    path = cut_suite(tmp_path) / "t1_001_002.toml"
    path.write_text(path.read_text().replace("track = 1", "track = 4"))
    with pytest.raises(TaskError, match="key 'track'"):
        load_task(path)


def test_import_from_a_clone_cuts_every_pinned_file(tmp_path: Path) -> None:
    tasks = load_suite(cut_suite(tmp_path))
    pins = suite_pins(tasks)
    assert len(pins) == 5  # scripts of records 1, 2, 3 and the kernels of 2 and 3
    result = import_records(clone(tmp_path), pins, tmp_path / "cache")
    assert set(result.imported) == {p.ref.sha256 for p in pins} and not result.stats.decoys
    kernels = cached_path(tmp_path / "cache", tasks[1].target.script.files[0][1]).read_text()
    assert kernels == "def k():\n    return 3\n"


def test_a_decoy_with_the_right_name_and_wrong_content_is_not_imported(tmp_path: Path) -> None:
    tasks = load_suite(cut_suite(tmp_path))
    result = import_records(clone(tmp_path, decoy_for=3), suite_pins(tasks), tmp_path / "cache")
    decoy = [p for p in result.stats.decoys]
    assert [d.name for d in decoy] == ["run.txt"] and "Rec3" in str(decoy[0])
    target = tasks[1].target.script
    assert result.status(target.sha256 or "") == "missing"
    assert not cached_path(tmp_path / "cache", target).exists()


def test_fetch_records_from_reports_the_missing_record(tmp_path: Path, capsys) -> None:
    suite = cut_suite(tmp_path)
    code = cli.main(["fetch", "records", "--suite", str(suite), "--from", str(clone(tmp_path, decoy_for=3)),
                     "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr()
    assert code != 0 and "2 missing" in out.out  # record 3 and its kernels and "record 3" in (out.out + out.err)


def test_download_of_a_cut_pin_checks_the_log_and_the_cut(tmp_path: Path) -> None:
    task = load_suite(cut_suite(tmp_path))[1]
    mirror = tmp_path / "mirror"  # the raw-URL layout: owner/repo/commit/path
    clone(tmp_path, tree=mirror / "owner" / "nanogpt" / COMMIT)
    ref = task.target.script
    fetched = fetch_script(ref, tmp_path / "cache", base=mirror.as_uri())
    assert fetched.downloaded and fetched.path.read_bytes().startswith(b"# stand-in record 3")
    # the companion comes from the same log, already downloaded
    again = fetch_script(ref.files[0][1], tmp_path / "cache", base=mirror.as_uri())
    assert not again.downloaded
    bad = tmp_path / "bad"
    clone(tmp_path, decoy_for=2, tree=bad / "owner" / "nanogpt" / COMMIT)
    with pytest.raises(FetchError, match="does not match the pinned"):
        fetch_script(task.start.script, tmp_path / "cache2", base=bad.as_uri())


def test_resolved_task_puts_companions_beside_the_script(tmp_path: Path) -> None:
    task = load_suite(cut_suite(tmp_path))[1]
    with pytest.raises(MissingInput, match="not downloaded"):
        resolve_task(task, tmp_path / "cache")
    import_records(clone(tmp_path), suite_pins([task]), tmp_path / "cache")
    resolved = resolve_task(task, tmp_path / "cache")
    script = resolved.target.script
    assert script.path is not None and script.path.name == "train_gpt.py"
    assert (script.path.parent / "triton_kernels.py").read_text() == "def k():\n    return 3\n"
    assert dict(script.files)["triton_kernels.py"].path == script.path.parent / "triton_kernels.py"
    assert resolved.start.script.path != script.path  # each end has its own bundle
