"""Download the upstream record scripts a suite pins (url + sha256) into the cache, and find them there.

Scripts are stored as `<cache>/records/<sha256>.py`, so a cached file is named by its content and works offline
forever. A script pinned as a cut of a training log (tasks/log_cut.py) downloads the log into
`<cache>/records/logs/<log sha256>.log`, checks it, cuts the section and checks the cut's sha256 before storing
it; a script with companion files (`ScriptRef.files`, e.g. triton_kernels.py) resolves into a bundle folder
`<cache>/bundles/<sha256 prefix>/` holding it and its companions side by side, as the script expects them.
A download goes to a `.part` file that is resumed with an HTTP Range request after an interruption,
is verified against the pinned sha256 (a mismatch is refused and deleted), and only then renamed into place.
Nothing is ever written into the repository. The URL base can be redirected to a mirror (or a test server)
with `PYTEST_SPEEDRUN_RECORDS_BASE`. The standard library's urllib does the GETs: one plain HTTPS download per
file needs no extra dependency.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_speedrun.data.guard import full_sha256
from pytest_speedrun.errors import MissingInput, SpeedrunError
from pytest_speedrun.files import write_atomic
from pytest_speedrun.tasks.manifest import ScriptRef, Task

BASE_ENV = "PYTEST_SPEEDRUN_RECORDS_BASE"
GITHUB_RAW = "https://raw.githubusercontent.com/"


class FetchError(SpeedrunError):
    """A download failed or did not match its pinned hash."""


def cached_path(cache_dir: Path, ref: ScriptRef) -> Path:
    assert ref.sha256 is not None
    return cache_dir / "records" / f"{ref.sha256}.py"


def source_url(ref: ScriptRef, base: str | None = None) -> str:
    """The URL to download `ref` from: its pinned URL, or the same path under a mirror base."""
    assert ref.url is not None
    base = base if base is not None else os.environ.get(BASE_ENV)
    if base and ref.url.startswith(GITHUB_RAW):
        return base.rstrip("/") + "/" + ref.url[len(GITHUB_RAW):]
    return ref.url


@dataclass(frozen=True)
class Fetched:
    ref: ScriptRef
    path: Path
    downloaded: bool  # False: it was already in the cache


def log_path(cache_dir: Path, ref: ScriptRef) -> Path:
    assert ref.log_sha256 is not None
    return cache_dir / "records" / "logs" / f"{ref.log_sha256}.log"


def store_cut(log: Path, ref: ScriptRef, cache_dir: Path) -> Path:
    """Cut `ref`'s section from a verified log and store it under its sha256; FetchError when it differs."""
    from pytest_speedrun.tasks.log_cut import LogCutError, cut_bytes

    try:
        text = cut_bytes(log.read_bytes(), ref.cut or "")
    except LogCutError as exc:
        raise FetchError(f"{log}: {exc}") from None
    digest = hashlib.sha256(text).hexdigest()
    if digest != ref.sha256:
        raise FetchError(f"{log}: the section {ref.cut!r} cut from it has sha256 {digest}, not the pinned "
                         f"{ref.sha256}; refusing it")
    final = cached_path(cache_dir, ref)
    final.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(final, text)
    return final


def fetch_script(ref: ScriptRef, cache_dir: Path, base: str | None = None, timeout_s: float = 60.0) -> Fetched:
    """Make sure the pinned script is in the cache; download it (or the log it is cut from) if not."""
    if ref.url is None or ref.sha256 is None:
        raise FetchError(f"{ref.describe()}: not a pinned download (needs url and sha256)")
    final = cached_path(cache_dir, ref)
    if final.exists() and full_sha256(final) == ref.sha256:
        return Fetched(ref, final, downloaded=False)
    if ref.cut is not None:
        log = log_path(cache_dir, ref)
        downloaded = not (log.exists() and full_sha256(log) == ref.log_sha256)
        if downloaded:
            _download(source_url(ref, base), log, ref.log_sha256 or "", timeout_s)
        return Fetched(ref, store_cut(log, ref, cache_dir), downloaded=downloaded)
    _download(source_url(ref, base), final, ref.sha256, timeout_s)
    return Fetched(ref, final, downloaded=True)


def _download(url: str, final: Path, sha256: str, timeout_s: float) -> None:
    """GET `url` into `final` through a resumable `.part` file, refusing content whose sha256 is not `sha256`."""
    import urllib.error  # here, not at the top: ssl and http load only for a download, not for every item
    import urllib.request

    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_suffix(".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            resumed = offset and response.status == 206
            length = response.headers.get("Content-Length")
            expected = (offset if resumed else 0) + int(length) if length is not None else None
            with open(part, "ab" if resumed else "wb") as out:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
        if expected is not None and part.stat().st_size < expected:
            raise OSError(f"connection closed after {part.stat().st_size} of {expected} bytes")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part file is already complete
            pass
        else:
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL or your mirror "
                             f"(${BASE_ENV})") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{url}: download failed ({reason}); the partial file is kept and resumed next time") \
            from None
    digest = full_sha256(part)
    if digest != sha256:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: sha256 {digest} does not match the pinned {sha256}; refusing it (the file "
                         "changed upstream or was altered in transit)")
    os.replace(part, final)


def with_companions(ref: ScriptRef) -> list[ScriptRef]:
    """A script and the companion files it brings."""
    return [ref, *(sub for _, sub in ref.files)]


def script_refs(tasks: list[Task]) -> list[ScriptRef]:
    """The distinct pinned scripts of `tasks` (start and target, with their companions), in order."""
    seen: dict[str, ScriptRef] = {}
    for task in tasks:
        for ref in (*with_companions(task.start.script), *with_companions(task.target.script)):
            if ref.url is not None and ref.sha256 is not None:
                seen.setdefault(ref.sha256, ref)
    return list(seen.values())


def fetch_command(suite: str) -> str:
    return f"pytest-speedrun fetch records --suite {suite}"


def resolve_task(task: Task, cache_dir: Path) -> Task:
    """The task with its pinned scripts pointing at their cached copies; MissingInput (a skip) naming the
    exact command when one is not downloaded yet."""
    def resolve_one(ref: ScriptRef, which: str) -> ScriptRef:
        if ref.path is not None:
            return ref
        path = cached_path(cache_dir, ref)
        if not path.exists():
            raise MissingInput(f"the {which} script of {task.id} is not downloaded; run: {fetch_command(task.suite)} "
                               f"--cache-dir {cache_dir}")
        return replace(ref, path=path)

    def resolve(ref: ScriptRef, which: str) -> ScriptRef:
        main = resolve_one(ref, which)
        if not ref.files:
            return main
        files = tuple((name, resolve_one(sub, f"{which} {name}")) for name, sub in ref.files)
        return bundle(main, files, cache_dir)

    start = replace(task.start, script=resolve(task.start.script, "start"))
    target = replace(task.target, script=resolve(task.target.script, "target"))
    return replace(task, start=start, target=target)


BUNDLE_SCRIPT = "train_gpt.py"


def bundle(main: ScriptRef, files: tuple[tuple[str, ScriptRef], ...], cache_dir: Path) -> ScriptRef:
    """A folder holding the script and its companions side by side (a record reads them from its own folder),
    named by their hashes; the returned ref points into it."""
    assert main.path is not None
    key = hashlib.sha256("\n".join([main.sha256 or str(main.path)]
                                    + [f"{n} {s.sha256 or s.path}" for n, s in files]).encode()).hexdigest()
    folder = cache_dir / "bundles" / key[:20]
    wanted = [(BUNDLE_SCRIPT, main.path)] + [(n, s.path) for n, s in files if s.path is not None]
    for name, source in wanted:
        dest = folder / name
        data = source.read_bytes()
        if not dest.is_file() or dest.read_bytes() != data:  # small files: compare whole, never trust a name
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, data)
    return replace(main, path=folder / BUNDLE_SCRIPT, files=tuple((n, replace(s, path=folder / n)) for n, s in files))


FINEWEB_REPO = "kjj0/fineweb10B-gpt2"


def fineweb_files(train_shards: int) -> list[str]:
    return ["fineweb_val_000000.bin"] + [f"fineweb_train_{i:06d}.bin" for i in range(1, train_shards + 1)]


def fetch_fineweb(dest: Path, train_shards: int, progress: bool = True) -> list[Path]:
    """Download the FineWeb10B GPT-2 shards (val + `train_shards` train shards) with huggingface_hub, which
    resumes interrupted downloads and shows progress; validate every shard header afterwards. The hub
    endpoint honours HF_ENDPOINT (used by the tests to point at a local stand-in)."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        raise FetchError("fetching FineWeb needs huggingface_hub: pip install 'pytest-speedrun[data]'") from None
    from pytest_speedrun.data.dataset import read_header

    if not progress:
        disable_progress_bars()
    if not 1 <= train_shards <= 103:
        raise FetchError(f"--train-shards={train_shards}: FineWeb10B has train shards 1..103")
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in fineweb_files(train_shards):
        try:
            path = Path(hf_hub_download(repo_id=FINEWEB_REPO, filename=name, repo_type="dataset", local_dir=dest))
        except Exception as exc:  # the hub client raises many types (HTTP, offline, disk): report them as one
            raise FetchError(f"{FINEWEB_REPO}/{name}: download failed ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); run the command again to resume") \
                from None
        read_header(path)
        paths.append(path)
    return paths
