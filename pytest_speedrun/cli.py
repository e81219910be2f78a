"""The `pytest-speedrun` console script."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from pytest_speedrun import __version__
from pytest_speedrun.errors import SpeedrunError
from pytest_speedrun.judging.metrics import parse_log, to_cli_json


def _parse_log(args: argparse.Namespace) -> int:
    metrics = parse_log(Path(args.logfile), Path(args.script) if args.script else None)
    print(to_cli_json(metrics))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pytest_speedrun.results.report import write_report

    md, html, plots = write_report([Path(p) for p in args.results], Path(args.out))
    print(f"wrote {md} and {html}" + (f" with {len(plots)} plot(s)" if plots else " (no plots: matplotlib missing)"))
    return 0


def _fetch_records(args: argparse.Namespace) -> int:
    from pytest_speedrun.settings import default_cache_dir
    from pytest_speedrun.tasks.fetch import fetch_script, script_refs
    from pytest_speedrun.tasks.manifest import find_suite, load_suite

    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    suites = args.suite or ["nanogpt"]
    if args.from_dir:
        return _import_records(Path(args.from_dir), suites, cache)
    for suite in suites:
        refs = script_refs(load_suite(find_suite(suite)))
        for ref in refs:
            got = fetch_script(ref, cache, base=args.base)
            print(f"{'downloaded' if got.downloaded else 'cached    '} {got.path}  ({ref.url})")
        print(f"{len(refs)} pinned script(s) verified in {cache / 'records'} (suite {suite})")
    return 0


def _import_records(root: Path, suites: list[str], cache: Path) -> int:
    """`fetch records --from DIR`: one walk of the tree for every requested suite's pins."""
    from pytest_speedrun.tasks.manifest import find_suite, load_suite
    from pytest_speedrun.tasks.record_import import (
        import_records,
        report_lines,
        require_complete,
        suite_pins,
        walk_lines,
    )

    per_suite = {suite: load_suite(find_suite(suite)) for suite in suites}
    result = import_records(root, suite_pins([t for tasks in per_suite.values() for t in tasks]), cache)
    for suite, tasks in per_suite.items():
        print(f"suite {suite}:")
        print("\n".join("  " + line for line in report_lines(tasks, result)))
    print("\n".join(walk_lines(result)))
    print(f"cache: {cache / 'records'}")
    for suite, tasks in per_suite.items():
        require_complete(suite, tasks, root, result)
    return 0


def _fetch_data(args: argparse.Namespace) -> int:
    from pytest_speedrun.settings import default_data_dir
    from pytest_speedrun.tasks.fetch import fetch_fineweb

    dest = Path(args.data_dir) if args.data_dir else default_data_dir()
    paths = fetch_fineweb(dest, args.train_shards, progress=not args.quiet)
    print(f"{len(paths)} shard(s) verified in {dest} (val + {args.train_shards} train); "
          f"use --speedrun-data={dest} or leave it as the default")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import time

    from pytest_speedrun.pipeline.calibrate import Calibrator
    from pytest_speedrun.pipeline.session import SessionInfo, SpeedrunSession
    from pytest_speedrun.settings import build_settings
    from pytest_speedrun.tasks.fetch import resolve_task
    from pytest_speedrun.tasks.manifest import find_suite, load_suite

    settings = build_settings(
        agent=None, suites=[args.suite], hints="0", seeds=1, min_fsr=None, calibrate=True, calibration_runs=args.runs,
        results_dir=Path.cwd() / ".speedrun", cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        timeout_s=None, agent_timeout_s=1.0, threads=args.threads, python=None,
        data_dir=Path(args.data) if args.data else None, nproc=args.nproc)
    tasks = [t for t in load_suite(find_suite(args.suite))
             if not args.k or any(k in t.id for k in args.k.split(","))]
    if not tasks:
        raise SpeedrunError(f"-k {args.k}: no task of suite {args.suite} matches")
    session = SpeedrunSession(settings, None, SessionInfo.create(None))
    started = time.time()
    try:
        for task in tasks:
            task = resolve_task(task, settings.cache_dir)
            calibrator = Calibrator(settings.cache_dir, session.run_settings(task, task.id), runs=args.runs,
                                    force_before=started if args.force else None)
            ref = calibrator.reference(replace(task, reference="calibrate"))
            print(f"{task.id}: t_i {ref.t_start_ms:.0f} ms, t_i+1 {ref.t_target_ms:.0f} ms "
                  f"(paper/manifest: {task.start.train_time_ms:.0f}, {task.target.train_time_ms:.0f}) "
                  f"[{ref.source}, median of {args.runs}]", flush=True)
    finally:
        session.close()
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from pytest_speedrun.execution.doctor import DoctorOptions, render, run_checks, select_tasks, verdict

    opts = DoctorOptions(
        suite=args.suite, select=args.k, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        data_dir=Path(args.data) if args.data else None, python=args.python or sys.executable,
        python_override=bool(args.python), nproc=args.nproc,
        agent=args.agent, sandbox=args.sandbox, launcher=args.launcher, smoke=args.smoke,
        probe_timeout_s=args.probe_timeout)
    if args.python and not Path(args.python).exists():
        raise SpeedrunError(f"--python {args.python}: no such interpreter")
    checks = run_checks(opts)
    print(render(checks))
    code, line = verdict(args.suite, len(select_tasks(args.suite, args.k)), checks)
    print(line)
    return code


def _runtime_build(args: argparse.Namespace) -> int:
    from pytest_speedrun.execution.runtime_build import build_runtime, find_runtime
    from pytest_speedrun.settings import default_cache_dir

    runtime = find_runtime(args.suite, args.name)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    build_runtime(runtime, cache, base_python=args.python, wheels_dir=Path(args.wheels) if args.wheels else None,
                  wheel_files=[Path(w) for w in args.wheel or []], index_url=args.index_url, offline=args.offline,
                  rebuild=args.rebuild, log=lambda line: print(line, flush=True))
    return 0


def _runtime_wheels(args: argparse.Namespace) -> int:
    from pytest_speedrun.execution.runtime_build import (
        download_hint,
        find_runtime,
        required_wheels,
        user_index_settings,
    )

    runtime = find_runtime(args.suite, args.name)
    pins = required_wheels(runtime, python_version=args.python_version, platform=args.platform,
                           index_url=args.index_url)
    if args.output:
        Path(args.output).write_text("\n".join(pins) + "\n", encoding="utf-8")
    print("\n".join(pins))
    print(f"# {len(pins)} pinned wheel(s) for runtime {runtime.name} (Python {args.python_version or runtime.python}, "
          f"{args.platform})" + (f"; written to {args.output}" if args.output else ""))
    print(f"# resolved against: {user_index_settings(index_url=args.index_url).with_runtime(runtime).describe()}")
    print("\n".join(f"# {line}" for line in download_hint(runtime, args.python_version, args.platform)))
    return 0


def _runtime_list(args: argparse.Namespace) -> int:
    from pytest_speedrun.execution.runtime_build import build_command, human_size, list_runtimes, unfinished_runtimes
    from pytest_speedrun.settings import default_cache_dir
    from pytest_speedrun.tasks.manifest import find_suite
    from pytest_speedrun.tasks.runtimes import suite_runtimes

    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    done = list_runtimes(cache)
    rows = [(r["name"], r.get("torch") or "?", r.get("cuda") or "none", r.get("python_version") or "?",
             human_size(r.get("size_bytes", 0)), r["dir"]) for r in done]
    if rows:
        head = ("RUNTIME", "TORCH", "CUDA", "PYTHON", "SIZE", "WHERE")
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        for row in (head, *rows):
            print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    else:
        print(f"no runtime built in {cache / 'runtimes'}")
    for folder in unfinished_runtimes(cache):
        print(f"{folder.name}: not recorded in {folder} (a build failed, was refused or is under way)")
    names = {r["name"] for r in done}
    missing = [rt for name, rt in suite_runtimes(find_suite(args.suite)).items() if name not in names]
    for rt in missing:
        print(f"{rt.name}: not built (suite {args.suite}); build it with: {build_command(rt)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-speedrun", description="Tools for the pytest-speedrun benchmark.")
    parser.add_argument("--version", action="version", version=f"pytest-speedrun {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse-log", help="print the final result of a training log as JSON")
    p.add_argument("logfile", help="log of a NanoGPT speedrun record script (any record's format)")
    p.add_argument("--script", help="the script that wrote the log: its echoed source lines are ignored")
    p.set_defaults(func=_parse_log)
    fetch = sub.add_parser("fetch", help="download pinned inputs (record scripts, FineWeb shards)")
    fsub = fetch.add_subparsers(dest="what", required=True)
    p = fsub.add_parser("records", help="download (or import with --from) the suite's pinned record scripts into "
                        "the cache, verified by sha256")
    p.add_argument("--suite", action="append", help="suite whose scripts to fetch; repeatable (default: nanogpt)")
    p.add_argument("--from", dest="from_dir", metavar="DIR",
                   help="offline: import every file under DIR whose sha256 matches a pin (a clone, a copied folder, "
                        "a USB stick); exits non-zero naming what is missing")
    p.add_argument("--cache-dir", help="cache directory (default: $PYTEST_SPEEDRUN_CACHE or the user cache dir)")
    p.add_argument("--base", help="mirror URL replacing https://raw.githubusercontent.com/")
    p.set_defaults(func=_fetch_records)
    p = fsub.add_parser("data", help="download FineWeb10B GPT-2 shards (resumable) and validate their headers")
    p.add_argument("--train-shards", type=int, required=True, help="train shards to get (1..103; see the tasks)")
    p.add_argument("--data-dir", help="destination (default: <cache dir>/fineweb10B)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_fetch_data)
    p = sub.add_parser("calibrate", help="measure t_i and t_i+1 of tasks on this machine (cached by fingerprint)")
    p.add_argument("--suite", default="nanogpt", help="suite (default: nanogpt)")
    p.add_argument("-k", help="task ids to calibrate: substrings, comma-separated (default: all)")
    p.add_argument("--runs", type=int, default=3, help="runs per record; the median is used (default 3)")
    p.add_argument("--force", action="store_true", help="re-measure even when cached")
    p.add_argument("--nproc", type=int, help="processes (GPUs) per run (default: the manifest's)")
    p.add_argument("--threads", type=int, help="CPU threads per run (default: all usable cores)")
    p.add_argument("--data", help="FineWeb shard directory (default: <cache dir>/fineweb10B)")
    p.add_argument("--cache-dir", help="cache directory (default: $PYTEST_SPEEDRUN_CACHE or the user cache dir)")
    p.set_defaults(func=_calibrate)
    p = sub.add_parser("doctor", help="check whether a suite can run on this node; every failed check says its fix")
    p.add_argument("--suite", default="nanogpt", help="suite whose needs decide the exit code (default: nanogpt)")
    p.add_argument("-k", help="only these tasks: id substrings, comma-separated (default: all)")
    p.add_argument("--nproc", type=int, help="processes (GPUs) per run, as --speedrun-nproc (default: the manifest's)")
    p.add_argument("--smoke", action="store_true", help="check for smoke mode: start scripts only, no FineWeb")
    p.add_argument("--python", help="interpreter for training runs, as --speedrun-python (default: this one)")
    p.add_argument("--data", help="FineWeb shard directory, as --speedrun-data (default: <cache dir>/fineweb10B)")
    p.add_argument("--cache-dir", help="cache directory (default: $PYTEST_SPEEDRUN_CACHE or the user cache dir)")
    p.add_argument("--agent", help="agent whose API keys to check (default: ini speedrun_agent)")
    p.add_argument("--sandbox", help="sandbox you will use, as --speedrun-sandbox (default: none)")
    p.add_argument("--launcher", help="local or slurm, as --speedrun-launcher (default: ini speedrun_launcher)")
    p.add_argument("--probe-timeout", type=float, default=180.0,
                   help="seconds the run interpreter may take to answer the torch/CUDA probe (default 180)")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("runtime", help="build the runtimes tasks run in (Python + torch, with uv) and list them")
    rsub = p.add_subparsers(dest="what", required=True)
    p = rsub.add_parser("build", help="build a runtime into the cache from a base Python on this machine")
    p.add_argument("name", help="runtime name (runtimes/NAME.toml of the suite, e.g. torch-2.7.1)")
    p.add_argument("--suite", default="nanogpt", help="suite defining the runtime (default: nanogpt)")
    p.add_argument("--wheels", metavar="DIR", help="offline: install only from this folder of wheels (no index)")
    p.add_argument("--wheel", action="append", metavar="FILE",
                   help="a wheel file installed with the runtime (repeatable); a runtime with user_wheel needs torch's")
    p.add_argument("--python", metavar="PATH",
                   help="base interpreter (default: python3.X on PATH matching the runtime's Python)")
    p.add_argument("--index-url", help="primary package index, replacing pip's and uv's settings")
    p.add_argument("--offline", action="store_true", help="no network: uv's cache, --wheels and --wheel only")
    p.add_argument("--rebuild", action="store_true", help="build again even when already built")
    p.add_argument("--cache-dir", help="cache directory (default: $PYTEST_SPEEDRUN_CACHE or the user cache dir)")
    p.set_defaults(func=_runtime_build)
    p = rsub.add_parser("wheels", help="print the pinned wheels a runtime needs (to download them elsewhere)")
    p.add_argument("name", help="runtime name (e.g. torch-2.7.1)")
    p.add_argument("--suite", default="nanogpt", help="suite defining the runtime (default: nanogpt)")
    p.add_argument("--python-version", help="target Python major.minor (default: the runtime's)")
    p.add_argument("--platform", default="x86_64-unknown-linux-gnu",
                   help="target platform, as uv names it (default: x86_64-unknown-linux-gnu)")
    p.add_argument("--index-url", help="primary package index, replacing pip's and uv's settings")
    p.add_argument("-o", "--output", metavar="FILE", help="also write the pins to FILE (a requirements file)")
    p.set_defaults(func=_runtime_wheels)
    p = rsub.add_parser("list", help="show the built runtimes (where, torch, Python, size) and those not built")
    p.add_argument("--suite", default="nanogpt", help="suite whose unbuilt runtimes to list (default: nanogpt)")
    p.add_argument("--cache-dir", help="cache directory (default: $PYTEST_SPEEDRUN_CACHE or the user cache dir)")
    p.set_defaults(func=_runtime_list)
    p = sub.add_parser("report", help="render results stores to Markdown, HTML and PNG plots")
    p.add_argument("results", nargs="+", help="results store directories (e.g. .speedrun) or results.jsonl files")
    p.add_argument("--out", default="speedrun-report", help="output directory (default: speedrun-report)")
    p.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpeedrunError as exc:
        print(f"pytest-speedrun: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
