import base64
import builtins
import json
import re
from pathlib import Path

import pytest

from pytest_speedrun.results.report import (
    PLOTS_SKIPPED,
    load_records,
    make_plots,
    render_html,
    render_markdown,
    write_report,
)
from pytest_speedrun.results.store import ResultsFormatError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T_START, T_TARGET = 10_000.0, 6_000.0

# (task, seed, status, fsr) for two configurations; FSR -> train time via t' = t_i - fsr * (t_i - t_i+1).
ORACLE = [("tiny01", 0, "passed", 1.0), ("tiny01", 1, "passed", 0.8), ("tiny02", 0, "passed", 0.9),
          ("tiny02", 1, "crashed", None), ("tiny03", 0, "passed", 0.6), ("tiny03", 1, "passed", 0.6)]
LLM = [("tiny01", 0, "passed", 0.5), ("tiny01", 1, "invalid", None), ("tiny02", 0, "timeout", None),
       ("tiny02", 1, "passed", 0.3), ("tiny03", 0, "passed", 0.4), ("tiny03", 1, "passed", 0.2)]


def make_record(task: str, seed: int, status: str, fsr: float | None, **config) -> dict:
    passed = status == "passed"
    train_ms = T_START - fsr * (T_START - T_TARGET) if passed else None
    rec = {
        "task": task, "suite": "tiny", "agent": "oracle", "hints": "0", "seed": seed, "status": status,
        "reasons": [] if passed else [f"{status} on purpose"], "target_val_loss": 3.28,
        "t_start_ms": T_START, "t_target_ms": T_TARGET, "reference_source": "calibrated:abc123",
        "artifact_dir": f"/tmp/store/s1/{task}_h0-s{seed}", "log_path": f"/tmp/store/s1/{task}_h0-s{seed}/run.log",
        "val_loss": 3.27 if passed else (3.35 if status == "invalid" else None),
        "train_time_ms": train_ms, "step": 100 if passed else None, "steps": 100, "wall_s": 12.5,
        "speedup": T_START / train_ms if passed else None, "fsr": fsr if passed else None,
        "usage": {"calls": 3, "tokens": 1200}, "harness_version": "0.1.0",
        "started": "2025-01-01T10:00:00+0000", "finished": "2025-01-01T10:01:00+0000",
    }
    rec.update(config)
    return rec


def write_store(path: Path, records: list[dict]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def records() -> list[dict]:
    llm = dict(agent="command:llm", model="o3-mini", scaffold="aide", hints="1")
    nodes = [{"kind": "buggy"}, {"kind": "improved"}, {"kind": "unimproved"}, {"kind": "improved"}]
    return ([make_record(*r) for r in ORACLE]
            + [make_record(*r, **llm, nodes=nodes, resumed=False) for r in LLM])


@pytest.fixture
def store(tmp_path: Path, records: list[dict]) -> Path:
    return write_store(tmp_path / "store", records)


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def table_row(markdown: str, first_cell: str) -> str:
    [row] = [ln for ln in markdown.splitlines() if ln.startswith(f"| {first_cell} |")]
    return row


# ------------------------------------------------------------------------------------------------------ loading


def test_load_records_from_store_dirs_and_files(tmp_path: Path, records: list[dict]) -> None:
    a = write_store(tmp_path / "a", records[:6])
    b = write_store(tmp_path / "b", records[6:])
    assert load_records([a, b / "results.jsonl"]) == records


def test_load_records_names_file_and_line_of_bad_json(store: Path) -> None:
    with (store / "results.jsonl").open("a", encoding="utf-8") as f:
        f.write("\n{not json\n")
    with pytest.raises(ResultsFormatError, match=r"results\.jsonl:14: invalid JSON"):
        load_records([store])


def test_load_records_rejects_lines_that_are_not_records(tmp_path: Path) -> None:
    store = tmp_path / "s"
    store.mkdir()
    (store / "results.jsonl").write_text('{"task": "tiny01"}\n', encoding="utf-8")
    with pytest.raises(ResultsFormatError, match=r"results\.jsonl:1: result record lacks agent, hints, seed, status"):
        load_records([store])


def test_load_records_reports_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(ResultsFormatError, match="no such results file or store"):
        load_records([tmp_path / "nowhere"])
    with pytest.raises(ResultsFormatError, match="holds no results.jsonl"):
        load_records([tmp_path])


# ----------------------------------------------------------------------------------------------------- markdown


def test_markdown_configuration_table(records: list[dict]) -> None:
    md = render_markdown(records)
    # oracle: tasks 0.9, 0.45, 0.6 -> 0.65; seeds 2.5/3 and 1.4/3 -> std 1.1/3/sqrt(2) = 0.259;
    # IQM of [0, .6, .6, .8, .9, 1] trimming one per end = 0.725
    oracle = table_row(md, "oracle · h0")
    assert "| oracle | - | - | 0 | 6 | 5 | 0.650 ± 0.259 | 0.725 [" in oracle
    # llm: tasks 0.25, 0.15, 0.3 -> 0.233; seeds 0.3 and 0.1667 -> std 0.094; IQM of [0, 0, .2, .3, .4, .5] = 0.225
    llm = table_row(md, "command:llm · o3-mini · aide · h1")
    assert "| command:llm | o3-mini | aide | 1 | 6 | 4 | 0.233 ± 0.094 | 0.225 [" in llm


def test_markdown_per_task_table(records: list[dict]) -> None:
    md = render_markdown(records)
    header = table_row(md, "task")
    assert header == "| task | command:llm · o3-mini · aide · h1 | oracle · h0 |"
    assert table_row(md, "tiny02") == ("| tiny02 | 0.150 ± 0.212 (1 passed, 1 timeout) "
                                       "| 0.450 ± 0.636 (1 passed, 1 crashed) |")
    assert table_row(md, "tiny03") == "| tiny03 | 0.300 ± 0.141 (2 passed) | 0.600 ± 0.000 (2 passed) |"


def test_markdown_compares_with_the_paper_where_it_matches(records: list[dict]) -> None:
    md = render_markdown(records)
    assert "## Compared with the paper" in md
    assert table_row(md, "o3-mini") == "| o3-mini | aide | 1 | 0.233 ± 0.094 | 0.410 ± 0.020 |"
    assert "## Compared with the paper" not in render_markdown([r for r in records if r["agent"] == "oracle"])


def test_markdown_links_plots_and_notes_skipped_plots(records: list[dict]) -> None:
    md = render_markdown(records, {"fsr_per_task": Path("fsr_per_task.png")})
    assert "![FSR per task](fsr_per_task.png)" in md
    assert PLOTS_SKIPPED in render_markdown(records, {})
    assert "## Plots" not in render_markdown(records)


def test_markdown_escapes_pipes_in_agent_names(records: list[dict]) -> None:
    md = render_markdown([make_record("tiny01", 0, "passed", 0.5, agent="command:a | b")])
    assert "| command:a \\| b · h0 |" in md


def test_markdown_is_deterministic(records: list[dict]) -> None:
    assert render_markdown(records) == render_markdown(list(records))


def test_markdown_of_no_records() -> None:
    assert "No results." in render_markdown([])


# --------------------------------------------------------------------------------------------------------- html


def test_html_is_self_contained_without_plots(records: list[dict]) -> None:
    page = render_html(records, {})
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "<script" not in page
    assert "<td>0.650 ± 0.259</td>" in page and PLOTS_SKIPPED in page


def test_html_escapes_record_text() -> None:
    page = render_html([make_record("<tiny01>", 0, "passed", 0.5)])
    assert "&lt;tiny01&gt;" in page and "<tiny01>" not in page


# -------------------------------------------------------------------------------------------------------- plots


def test_plots_are_pngs(tmp_path: Path, records: list[dict]) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    plots = make_plots(records, tmp_path)
    assert sorted(plots) == ["fsr_by_hints", "fsr_per_task", "node_types"]
    for path in plots.values():
        assert path.parent == tmp_path and path.read_bytes().startswith(PNG_SIGNATURE)
        pixels = imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_node_plot_only_when_records_have_nodes(tmp_path: Path, records: list[dict]) -> None:
    pytest.importorskip("matplotlib")
    plain = [r for r in records if "nodes" not in r]
    assert sorted(make_plots(plain, tmp_path)) == ["fsr_by_hints", "fsr_per_task"]


def test_write_report_embeds_plots_in_html(tmp_path: Path, store: Path) -> None:
    pytest.importorskip("matplotlib")
    md_path, html_path, plots = write_report([store], tmp_path / "out")
    assert md_path == tmp_path / "out" / "report.md" and html_path == tmp_path / "out" / "report.html"
    md = md_path.read_text(encoding="utf-8")
    assert "![FSR per task](fsr_per_task.png)" in md and PLOTS_SKIPPED not in md
    page = html_path.read_text(encoding="utf-8")
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(plots) == 3
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)


def test_write_report_without_matplotlib(tmp_path: Path, store: Path, no_matplotlib: None) -> None:
    md_path, html_path, plots = write_report([store], tmp_path / "out")
    assert plots == {}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.md"]
    md = md_path.read_text(encoding="utf-8")
    assert PLOTS_SKIPPED in md and "0.650 ± 0.259" in md
    page = html_path.read_text(encoding="utf-8")
    assert PLOTS_SKIPPED in page and "<img" not in page


def test_report_subcommand_writes_markdown_and_html(tmp_path, capsys) -> None:
    import json

    from pytest_speedrun import cli

    store = tmp_path / "store"
    store.mkdir()
    rec = {"task": "tiny01", "suite": "tiny", "agent": "oracle", "hints": "0", "seed": 0, "status": "passed",
           "fsr": 0.9, "speedup": 1.5, "val_loss": 2.0, "train_time_ms": 1000.0}
    (store / "results.jsonl").write_text(json.dumps(rec) + "\n")
    assert cli.main(["report", str(store), "--out", str(tmp_path / "out")]) == 0
    assert "tiny01" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "report.html").exists()
    assert "wrote" in capsys.readouterr().out


def test_report_subcommand_on_a_missing_store_is_one_line(tmp_path, capsys) -> None:
    from pytest_speedrun import cli

    assert cli.main(["report", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err
