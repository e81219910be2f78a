"""`pytest-speedrun runtime build / wheels / list` (execution/runtime_build.py), offline: a stand-in runtime whose
torch is a tiny wheel written here, built with uv from the interpreter running the tests."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from pytest_speedrun.cli import main
from pytest_speedrun.errors import RuntimeBuildError
from pytest_speedrun.execution import runtime_build as rb
from pytest_speedrun.tasks.runtimes import load_runtime

uv_missing = pytest.mark.skipif(shutil.which("uv") is None and importlib.util.find_spec("uv") is None,
                                reason="uv not installed (pip install pytest-speedrun[runtime])")
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
BASE = os.path.realpath(sys.executable)  # a pyenv shim's real interpreter


def write_wheel(folder: Path, name: str, version: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (METADATA, WHEEL, RECORD), written as a zip: no build backend needed."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    contents = {**files, f"{dist}/METADATA": meta,
                f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    contents[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in contents.items():
            zf.writestr(path, text)
    return wheel


def torch_wheel(folder: Path, version: str, cuda: str | None = None) -> Path:
    return write_wheel(folder, "torch", version, {
        "torch/__init__.py": f"__version__ = {version!r}\nfrom . import version\n",
        "torch/version.py": f"cuda = {cuda!r}\n"}, requires=("standin-helper",))


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A suite folder with stand-in runtimes: one from the wheel folder, one from the user's torch wheel."""
    folder = tmp_path / "suite" / "runtimes"
    folder.mkdir(parents=True)
    (folder / "standin.toml").write_text(
        f'description = "stand-in"\npython = "{PYTHON}"\ntorch = "0.0.1"\n'
        'requirements = ["torch==0.0.1+standin", "standin-helper==1.0"]\n')
    (folder / "standin-nightly.toml").write_text(
        f'description = "stand-in nightly"\npython = "{PYTHON}"\ntorch = "0.0.2.dev2025"\n'
        'requirements = ["standin-helper==1.0"]\nuser_wheel = true\n')
    (folder / "standin-wrong.toml").write_text(
        f'description = "stand-in wanting another torch"\npython = "{PYTHON}"\ntorch = "9.9"\n'
        'requirements = ["torch==0.0.1+standin"]\n')
    return folder.parent


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    torch_wheel(folder, "0.0.1+standin", cuda="12.6")
    write_wheel(folder, "standin-helper", "1.0", {"standin_helper/__init__.py": "VALUE = 1\n"})
    return folder


@pytest.fixture(autouse=True)
def offline_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))


@uv_missing
def test_build_offline_from_a_wheel_folder_then_list_shows_it(suite, wheels, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    code = main(["runtime", "build", "standin", "--suite", str(suite), "--wheels", str(wheels), "--python", BASE,
                 "--offline", "--cache-dir", str(cache)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no index" in out and "built runtime standin: torch 0.0.1+standin (CUDA 12.6)" in out
    python = rb.built_python(cache, "standin")
    assert python == cache / "runtimes" / "standin" / "bin" / "python"
    info = rb.build_info(cache, "standin")
    assert info["torch"] == "0.0.1+standin" and info["cuda"] == "12.6" and info["python"] == str(python)
    assert info["python_version"].startswith(PYTHON) and info["size_bytes"] > 0
    assert info["sources"]["wheels_dir"] == str(wheels.resolve())
    assert "standin-helper==1.0" in info["packages"]
    assert main(["runtime", "list", "--suite", str(suite), "--cache-dir", str(cache)]) == 0
    listed = capsys.readouterr().out
    row = next(line for line in listed.splitlines() if line.startswith("standin "))
    assert "0.0.1+standin" in row and str(cache / "runtimes" / "standin") in row
    assert "standin-nightly: not built" in listed and "--wheel TORCH.whl" in listed
    assert [r["name"] for r in rb.list_runtimes(cache)] == ["standin"]


@uv_missing
def test_a_built_runtime_is_kept_unless_rebuilt(suite, wheels, tmp_path) -> None:
    cache, lines = tmp_path / "cache", []
    runtime = rb.find_runtime(str(suite), "standin")
    first = rb.build_runtime(runtime, cache, base_python=BASE, wheels_dir=wheels, offline=True, log=lines.append)
    again = rb.build_runtime(runtime, cache, base_python=BASE, wheels_dir=wheels, offline=True, log=lines.append)
    assert again == first and "already built" in lines[-1]


@uv_missing
def test_user_wheel_runtime_builds_from_the_named_wheel(suite, wheels, tmp_path) -> None:
    nightly = torch_wheel(tmp_path, "0.0.2.dev20250125")
    cache = tmp_path / "cache"
    info = rb.build_runtime(rb.find_runtime(str(suite), "standin-nightly"), cache, base_python=BASE,
                            wheels_dir=wheels, wheel_files=[nightly], offline=True, log=lambda _: None)
    assert info["torch"] == "0.0.2.dev20250125" and info["cuda"] is None
    assert info["sources"]["wheel_files"] == [str(nightly.resolve())]


@uv_missing
def test_wheels_prints_the_pins_from_the_users_find_links(suite, wheels, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # this machine's pip settings stay out
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UV_FIND_LINKS", str(wheels))
    (tmp_path / "empty").mkdir()
    out_file = tmp_path / "pins.txt"
    code = main(["runtime", "wheels", "standin", "--suite", str(suite), "--index-url", (tmp_path / "empty").as_uri(),
                 "-o", str(out_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out_file.read_text().split() == ["standin-helper==1.0", "torch==0.0.1+standin"]
    assert f"find-links {wheels} (UV_FIND_LINKS)" in out and "pip download --only-binary=:all:" in out


def test_user_wheel_runtime_without_a_wheel_is_a_one_line_error(suite, tmp_path, capsys) -> None:
    code = main(["runtime", "build", "standin-nightly", "--suite", str(suite), "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "--wheel FILE" in err and "standin-nightly" in err


@uv_missing
def test_a_wheel_folder_missing_a_pin_fails_naming_it(suite, tmp_path) -> None:
    folder = tmp_path / "partial"
    folder.mkdir()
    torch_wheel(folder, "0.0.1+standin")  # standin-helper==1.0 is missing
    with pytest.raises(RuntimeBuildError) as exc:
        rb.build_runtime(rb.find_runtime(str(suite), "standin"), tmp_path / "cache", base_python=BASE,
                         wheels_dir=folder, offline=True, log=lambda _: None)
    message = str(exc.value)
    assert "\n" not in message and "uv failed" in message and "standin-helper" in message
    assert rb.built_python(tmp_path / "cache", "standin") is None


@uv_missing
def test_a_build_whose_torch_is_not_the_runtimes_is_refused_and_unrecorded(suite, wheels, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeBuildError, match=r"wants torch 9\.9\* and the build has torch 0\.0\.1\+standin"):
        rb.build_runtime(rb.find_runtime(str(suite), "standin-wrong"), cache, base_python=BASE, wheels_dir=wheels,
                         offline=True, log=lambda _: None)
    assert (cache / "runtimes" / "standin-wrong" / "bin" / "python").exists()
    assert rb.built_python(cache, "standin-wrong") is None and rb.build_info(cache, "standin-wrong") is None
    assert rb.list_runtimes(cache) == []
    main(["runtime", "list", "--suite", str(suite), "--cache-dir", str(cache)])
    assert "standin-wrong: not recorded" in capsys.readouterr().out


def test_unknown_runtime_lists_the_known_ones(suite) -> None:
    with pytest.raises(RuntimeBuildError, match="no runtime 'nope'; known: standin, standin-nightly, standin-wrong"):
        rb.find_runtime(str(suite), "nope")


def test_the_nanogpt_suite_runtimes_are_found() -> None:
    assert rb.find_runtime("nanogpt", "torch-2.7.1").torch == "2.7.1"


def test_base_python_is_found_on_path_by_the_runtimes_version(suite, tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / f"python{PYTHON}").symlink_to(BASE)
    found, version = rb.find_base_python(rb.find_runtime(str(suite), "standin"), path=str(bin_dir))
    assert version.startswith(PYTHON) and Path(found).exists()


def test_no_base_python_names_the_option(suite, tmp_path) -> None:
    runtime = load_runtime(suite / "runtimes" / "standin.toml")
    with pytest.raises(RuntimeBuildError, match=f"needs a Python {PYTHON} .* --python PATH"):
        rb.find_base_python(runtime, path=str(tmp_path))
    with pytest.raises(RuntimeBuildError, match="--python /no/such: not an interpreter"):
        rb.find_base_python(runtime, "/no/such")


def test_a_base_of_another_version_is_used_with_a_warning(tmp_path) -> None:
    path = tmp_path / "runtimes" / "old.toml"
    path.parent.mkdir()
    path.write_text('description = "d"\npython = "3.99"\ntorch = "1"\nrequirements = ["torch"]\n')
    lines: list[str] = []
    assert rb.find_base_python(load_runtime(path), BASE, log=lines.append)[1].startswith(PYTHON)
    assert "warning" in lines[0] and "3.99" in lines[0]


def test_user_index_settings_read_pip_and_uv() -> None:
    pip = ("global.extra-index-url='file:///a/simple file:///b/simple'\n"
           "global.index-url='https://mirror/simple'\n:env:.index-url='https://env-mirror/simple'\n"
           "global.find-links='/opt/wheels'\nglobal.cert='/x'\n")
    got = rb.user_index_settings({"UV_EXTRA_INDEX_URL": "https://uv-extra/simple"}, pip)
    assert got.index_url == ("https://env-mirror/simple", "pip config")
    assert [u for u, _ in got.extra_index_urls] == ["https://uv-extra/simple", "file:///a/simple", "file:///b/simple"]
    assert got.find_links == (("/opt/wheels", "pip config"),)
    assert "--index-strategy" in got.args({}) and "--index-strategy" not in got.args({"UV_INDEX_STRATEGY": "x"})
    forced = rb.user_index_settings({"PIP_INDEX_URL": "https://p/simple"}, "", index_url="https://cli/simple")
    assert forced.index_url == ("https://cli/simple", "--index-url")
    assert rb.user_index_settings({"UV_DEFAULT_INDEX": "https://u/simple"}, "").index_url[1] == "UV_DEFAULT_INDEX"


def test_the_runtimes_index_comes_first_and_is_reported(suite) -> None:
    runtime = load_runtime(suite / "runtimes" / "standin.toml")
    runtime = type(runtime)(**{**runtime.__dict__, "index": "https://download.pytorch.org/whl/cu126"})
    got = rb.user_index_settings({}, "global.extra-index-url='file:///a/simple'").with_runtime(runtime)
    assert got.args({})[:2] == ["--extra-index-url", "https://download.pytorch.org/whl/cu126"]
    assert "runtime standin" in got.describe() and "uv's default" in got.describe()


def test_uvs_error_becomes_one_line() -> None:
    lines = ["  × No solution found when resolving dependencies:", "  ╰─▶ Because standin-helper was not found in",
             "      the package locations, we can conclude that your requirements are", "      unsatisfiable.",
             "", "      hint: something long", "      more hint"]
    assert rb._reason(lines) == ("Because standin-helper was not found in the package locations, we can conclude "
                                 "that your requirements are unsatisfiable.")
    assert rb._reason(["error: Failed to fetch", "  Caused by: dns error"]) == "dns error"


def test_pip_download_hint_lists_exact_platform_tags(suite) -> None:
    hint = rb.download_hint(load_runtime(suite / "runtimes" / "standin-nightly.toml"), "3.12")
    assert "--platform manylinux_2_28_x86_64" in hint[0] and "--platform manylinux2014_x86_64" in hint[0]
    assert "--wheels DIR --wheel TORCH.whl" in hint[1] and "neither is listed" in hint[2]


def test_build_info_names_an_unreadable_record(tmp_path) -> None:
    folder = rb.runtime_dir(tmp_path, "x")
    folder.mkdir(parents=True)
    (folder / rb.RECORD).write_text("{")
    with pytest.raises(RuntimeBuildError, match="runtime.json: unreadable build record .* --rebuild"):
        rb.build_info(tmp_path, "x")
    assert json.loads(json.dumps(rb.list_runtimes(tmp_path / "none"))) == []
