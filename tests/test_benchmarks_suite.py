"""The benchmark suite (benchmarks/): one scenario table, one result schema, one renderer, one entry point.
The long scenarios are only checked to be wired (their parameters bind to their runner); the tiny digits demo
runs end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


from benchmarks.render import render_result
from benchmarks.runner import KINDS, check_params
from benchmarks.schema import RESULTS, Host, Measured, Result, combine_runs, judge, load_result, load_scenarios

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_list_names_every_scenario_of_the_table():
    out = bench("run", "--list")
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    assert listed == [s.name for s in load_scenarios().scenarios]
    assert len(listed) >= 15


def test_every_scenario_is_wired_to_a_runner_that_takes_its_parameters():
    for scenario in load_scenarios().scenarios:
        assert scenario.kind in KINDS, scenario.name
        check_params(scenario, seeds=scenario.seeds)
        if scenario.quick is not None:
            check_params(scenario, quick=True, seeds=scenario.seeds_for(True))


def test_accuracy_scenarios_of_edgekit_vs_peers_and_the_demo_repeat_over_three_seeds_quick_over_one():
    table = load_scenarios()
    for name in ("digits-demo", "fashion-mnist-fp32", "vs-peers-resnet", "vs-peers-mobilenet", "vs-peers-resnet-large"):
        scenario = table.get(name)
        assert scenario.seeds and len(scenario.seeds) >= 3, name
        assert scenario.quick is None or scenario.seeds_for(True) == scenario.seeds[:1]


def test_repeats_are_judged_on_the_mean_with_the_worst_run_and_rendered_as_mean_and_range():
    """Three seeds of a run: each number's mean is what a bar reads, its min-max and each run are kept, the
    worst run is the one in the bar's direction, and the page and its table show mean (min–max)."""
    runs = [(seed, Measured(rows=[{"path": "edgekit", "top1": top1}, {"path": f"budget → {backend}"}],
                            metrics={"top1": top1, "p50_ratio": ratio, "deployed": "onnxruntime-int8"}))
            for seed, top1, ratio, backend in ((0, 90.0, 1.00, "onnxruntime-int8"), (1, 91.0, 1.10, "openvino-int8"),
                                               (2, 92.0, 0.96, "openvino-int8"))]
    combined = combine_runs(runs)
    assert combined.seeds == [0, 1, 2] and combined.metrics["top1"] == 91.0
    assert combined.metrics["deployed"] == "onnxruntime-int8" and len(combined.per_seed) == 3
    assert combined.spread["top1"].runs == [90.0, 91.0, 92.0]
    bars = judge({"min_top1": 90.5, "max_p50_ratio": 1.05}, combined.metrics, combined.spread)
    assert [(b.met, b.worst) for b in bars] == [(True, 90.0), (True, 1.10)]
    result = Result(scenario="s", description="d", kind="compress", host=Host(cpu="cpu"), date="2026-12-06",
                    command="c", rows=combined.rows, metrics=combined.metrics, bars=bars, seeds=combined.seeds,
                    spread=combined.spread, per_seed=combined.per_seed)
    page = render_result(result)
    assert "| edgekit | 91 (90–92) |" in page and "seeds: 0, 1, 2" in page and "worst run" in page
    # a label that differs between seeds reads as each seed's, in order, as the user would write it
    assert "| budget → onnxruntime-int8 / budget → openvino-int8 / budget → openvino-int8 |" in page


def test_bad_input_is_one_line_and_exit_2():
    for args, words in ((["run", "no-such-scenario"], "no scenario named"),
                        (["run", "quant", "--set", "no_such_param=1"], "no_such_param"),
                        (["run", "quant", "--quick"], "no quick variant")):
        out = bench(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert words in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_bars_read_min_max_and_flags_and_a_missing_metric_fails():
    bars = judge({"min_speedup": 2.0, "max_drop_pt": 1.0, "same_predictions": True, "min_absent": 0},
                 {"speedup": 2.0, "drop_pt": 1.5, "same_predictions": True})
    assert [(b.name, b.met) for b in bars] == [("min_speedup", True), ("max_drop_pt", False),
                                               ("same_predictions", True), ("min_absent", False)]


def test_host_slug_tells_cpu_generations_apart():
    zen4 = Host.from_identity({"cpu": "AMD EPYC", "cores": "2", "cpu_family_model": "family 25 model 17"})
    zen5 = Host.from_identity({"cpu": "AMD EPYC", "cores": "2", "cpu_family_model": "family 26 model 2"})
    assert zen4.slug == "amd-epyc-f25m17-2c" and zen5.slug != zen4.slug
    assert Host(cpu="Intel(R) Xeon(R) Processor", cores=2).slug == "intel-xeon-processor-2c"


def test_stored_results_follow_the_layout_and_their_pages_are_rendered_from_them():
    files = sorted(RESULTS.rglob("*"))
    assert not [f for f in files if re.search(r"_run\d|_retimed|_rebuilt", f.name)]
    results = [p for p in files if p.suffix == ".json"]
    assert results
    scenarios = {s.name for s in load_scenarios().scenarios}
    for path in results:
        result = load_result(path)
        assert path == RESULTS / result.scenario / f"{result.stem}.json"
        assert result.scenario in scenarios
        page = path.with_suffix(".md").read_text()
        assert page == render_result(result), f"{path.with_suffix('.md')} is stale: python -m benchmarks index"
    index = (RESULTS / "README.md").read_text()
    for path in results:
        assert f"]({path.parent.name}/{path.with_suffix('.md').name})" in index


def test_renderer_puts_rows_metrics_and_bars_on_the_page():
    result = Result(scenario="x", description="a test", kind="compress", host=Host(cpu="CPU", cores=2),
                    date="2026-01-01T00:00:00+00:00", command="python -m benchmarks run x",
                    rows=[{"artifact": "a|b", "top1": 91.23456, "ok": True}, {"artifact": "c", "p50_ms": 1.5e-5}],
                    metrics={"speedup": 2.5}, bars=judge({"min_speedup": 2.0}, {"speedup": 2.5}))
    page = render_result(result)
    assert "| artifact | top1 | ok | p50_ms |" in page
    assert "| a\\|b | 91.23 | yes | — |" in page and "0.000015" in page
    assert "| min_speedup | 2.5 | 2 | yes |" in page and "Bars: 1 of 1 met." in page


def test_modules_write_nothing_on_import(tmp_path):
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "benchmarks").rglob("*") if p.is_file()}
    modules = [p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__main__"]
    code = "import importlib\n" + "".join(f"importlib.import_module('benchmarks.{m}')\n" for m in modules)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    after = {p: p.stat().st_mtime_ns for p in (ROOT / "benchmarks").rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if "__pycache__" not in p.parts} == {
        p: t for p, t in before.items() if "__pycache__" not in p.parts}
    assert not list(tmp_path.iterdir())


def test_quick_digits_demo_writes_a_result_in_the_schema_and_the_index_lists_it(tmp_path):
    out = bench("run", "digits-demo", "--quick", "--results", str(tmp_path), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (path,) = (tmp_path / "digits-demo").glob("*.json")
    result = Result(**json.loads(path.read_text()))
    assert path.name == f"{Host.here().slug}-quick.json" and result.quick
    assert result.params == {"target": "x86-cpu", "recipe": "quickstart"}
    assert {r["artifact"] for r in result.rows} >= {"onnxruntime-fp32", "openvino-fp32"}
    assert result.metrics["deployed"] in {r["artifact"] for r in result.rows}
    assert [b.name for b in result.bars] == ["min_deployed_top1"] and result.bars[0].met
    assert path.with_suffix(".md").read_text() == render_result(result)
    index = (tmp_path / "README.md").read_text()
    assert f"[{path.stem}.md](digits-demo/{path.stem}.md)" in index and "(quick)" in index


def test_real_lite0_scenario_is_wired_and_its_table_renders_every_column():
    """Issue 38's benchmark: the scenario runs the real_lite0 kind once (deterministic given the material), and
    a row of its table (tool, backend, precision, agreement, top-1 on the photos and the 120, p50, float layers)
    reaches the page with every column, a kept-layer list and an untimed Pi file shown as such."""
    from benchmarks.real_lite0 import COLUMNS

    scenario = load_scenarios().get("efficientnet-lite0-real")
    assert KINDS[scenario.kind] == "benchmarks.real_lite0:run" and scenario.seeds == [0]
    rows = [{"tool": "edgekit x86-cpu (deployed)", "backend": "onnxruntime", "precision": "mixed",
             "agreement": 99.17, "top1_photos": 85.0, "top1_120": 84.17, "p50_ms": 6.8, "latency": "measured here",
             "float_layers": "_blocks.3, _fc"},
            {"tool": "edgekit rpi4", "backend": "litert", "precision": "int8", "agreement": 96.0, "top1_photos": 80.0,
             "top1_120": 82.5, "p50_ms": None, "latency": "not timed here", "float_layers": None}]
    assert list(rows[0]) == list(COLUMNS)
    page = render_result(Result(scenario=scenario.name, description=scenario.description, kind=scenario.kind,
                                host=Host(cpu="CPU", cores=2), date="2026-01-01T00:00:00+00:00", command="x",
                                rows=rows))
    assert "| " + " | ".join(COLUMNS) + " |" in page
    assert "| edgekit x86-cpu (deployed) | onnxruntime | mixed | 99.17 | 85 | 84.17 | 6.8 | measured here | " \
           "_blocks.3, _fc |" in page
    assert "| edgekit rpi4 | litert | int8 | 96 | 80 | 82.5 | — | not timed here | — |" in page


def test_a_seeds_cached_paths_are_cleared_when_its_teacher_file_changes(tmp_path):
    """A rerun reuses one seed's pruned and distilled paths only if they were made from the same teacher file:
    a teacher retrained under another protocol must not be judged against paths made from the old one."""
    from benchmarks.vs_peers import made_from

    cache, teacher = tmp_path / "resnet-seed0", tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights of epoch 29")
    made_from(cache, teacher, fresh=False)
    (cache / "pruned.pt").write_bytes(b"made from epoch 29")
    made_from(cache, teacher, fresh=False)
    assert (cache / "pruned.pt").exists()            # same teacher: reused
    teacher.write_bytes(b"weights of epoch 30")
    made_from(cache, teacher, fresh=False)
    assert cache.is_dir() and not (cache / "pruned.pt").exists()
    (cache / "pruned.pt").write_bytes(b"made from epoch 30")
    made_from(cache, teacher, fresh=True)
    assert not (cache / "pruned.pt").exists()        # --fresh clears whatever made it
