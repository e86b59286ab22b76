"""CI gates on compress (exit code 3 after writing the bundle) and the HTML report in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from bundle_fixture import RECIPE
from conftest import run_cli
from edgekit.errors import EXIT_GATE_FAILED
from edgekit.gates import Gates, evaluate_gates
from edgekit.vocab import Basis
from edgekit.manifest import read_manifest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_failed_gate_writes_bundle_then_exits_3(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "gated"
    r = run_cli("compress", "--recipe", str(recipe), "--out", str(out), "--max-accuracy-drop", "1.0",
                "--max-latency-ms", "0.000001")
    assert r.returncode == EXIT_GATE_FAILED, r.stderr[-2000:]
    assert r.stderr.strip().startswith("error: CI gate failed") and "\n" not in r.stderr.strip()
    manifest = json.loads((out / "manifest.json").read_text())     # written before failing
    gates = manifest["gates"]
    assert gates["passed"] is False and gates["deployable"] == []
    latency = [g for g in gates["results"] if g["gate"].startswith("max_latency_ms")]
    accuracy = [g for g in gates["results"] if g["gate"].startswith("max_accuracy_drop")]
    assert latency and all(not g["passed"] and g["basis"] == "measured here" for g in latency)
    assert accuracy and all(g["passed"] for g in accuracy)        # same weights: ~0 drop through the runtimes
    assert "CI gates: FAILED" in (out / "report.md").read_text()
    assert "CI gates: FAILED" in (out / "report.html").read_text()
    # the gate only checks: it never reaches the recipe (what is built)
    assert manifest["recipe"]["compile"].get("max_accuracy_drop") is None


def test_gates_pass_when_one_artifact_meets_all(small_bundle):
    manifest = read_manifest(small_bundle)
    result = evaluate_gates(manifest, Gates(max_accuracy_drop=1.0, max_latency_ms=1000))
    assert result.passed and set(result.deployable) == {a.name for a in manifest.artifacts if a.part != "input"}
    slowest = max(a.metrics.latency.p50_ms for a in manifest.artifacts if a.part != "input")
    fastest = min(a.metrics.latency.p50_ms for a in manifest.artifacts if a.part != "input")
    if fastest < slowest:
        mid = evaluate_gates(manifest, Gates(max_latency_ms=(fastest + slowest) / 2))
        assert mid.passed and len(mid.deployable) == 1
    with pytest.raises(Exception, match="negative"):
        Gates(max_accuracy_drop=-1)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (apt install chromium)")
def test_html_report_renders_in_chromium(small_bundle, tmp_path):
    html = small_bundle / "report.html"
    assert html.is_file()
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", html.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    dom = r.stdout
    assert r.returncode == 0 and "</html>" in dom, r.stderr[-1500:]
    # the plot (inline SVG with one marker per variant) and the tables, as the browser parsed them
    plot = dom[dom.index('id="pareto-plot"'):]
    assert "<svg" in plot[:2000]
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    for art in manifest["artifacts"]:
        assert art["name"] in plot[:plot.index("</svg>")]          # labelled point per artifact
    for table_id in ("stages", "artifacts"):
        assert f'<table id="{table_id}">' in dom
    artifacts_table = dom[dom.index('<table id="artifacts">'):]
    artifacts_table = artifacts_table[:artifacts_table.index("</table>")]
    assert artifacts_table.count("<tr>") == 1 + len(manifest["artifacts"])
    for external in ('src="http', "src='http", 'href="http', "<link", "url(http"):   # self-contained: nothing fetched
        assert external not in dom, external


def test_manifest_round_trip_and_one_line_errors(small_bundle, tmp_path):
    """manifest.json is read only through edgekit.manifest: what it writes it reads back unchanged,
    and a missing, older or broken manifest is one line naming the file, not a KeyError later."""
    from edgekit.errors import EdgekitError
    from edgekit.manifest import SCHEMA_VERSION, write_manifest

    manifest = read_manifest(small_bundle)
    assert manifest.schema_version == SCHEMA_VERSION == 2 and manifest.bundle == str(small_bundle)
    copy = tmp_path / "copy"
    write_manifest(copy, manifest)
    assert json.loads((copy / "manifest.json").read_text()) == json.loads((small_bundle / "manifest.json").read_text())
    data = json.loads((small_bundle / "manifest.json").read_text())
    cases = {"missing": None, "old": {k: v for k, v in data.items() if k != "schema_version"},
             "broken": {**data, "references": {"final": {"accuracy": {"top1": "high"}}}}}
    for name, content in cases.items():
        bundle = tmp_path / name
        bundle.mkdir()
        if content is not None:
            (bundle / "manifest.json").write_text(json.dumps(content))
        with pytest.raises(EdgekitError) as err:
            read_manifest(bundle)
        message = str(err.value)
        assert "\n" not in message and ("manifest schema 1" in message if name == "old" else True)
        assert {"missing": "not an edgekit bundle", "old": "this edgekit reads schema 2",
                "broken": "references.final.accuracy.top1"}[name] in message


@pytest.mark.parametrize("slowdown", [1.3, 1.0])
def test_a_budget_missed_on_a_host_that_slowed_since_the_search_says_so(small_bundle, slowdown):
    """The search timed the input model at ``input / slowdown`` (set here, not computed by edgekit); the bundle
    then timed the input model's own file at ``input``. A budget the deployed file misses names the host's
    slowdown in its one-line error and in the report, and only when there was one."""
    from edgekit.gates import gate_failure
    from edgekit.manifest import SearchCandidate, SearchSection
    from edgekit.reports.search import search_lines
    from edgekit.verdicts import decide

    manifest = read_manifest(small_bundle)
    source = next(a for a in manifest.artifacts if a.part == "input")
    now = source.metrics.latency.p50_ms
    fastest = min(a.metrics.latency.p50_ms for a in manifest.artifacts if a.part != "input")
    budget = fastest / 2   # no trained file meets it
    searched = SearchCandidate(level=1.0, macs=manifest.model.macs, params=manifest.model.params,
                               backend=source.backend, precision=source.precision, p50_ms=now / slowdown,
                               basis="measured here")
    manifest.search = SearchSection(budget_ms=budget, aim_ms=0.9 * budget, target=manifest.target.name,
                                    basis="measured here", trace=[searched])
    decide(manifest, Gates(max_latency_ms=budget))
    final = manifest.search.final
    assert not final.met and final.basis == Basis.here()
    assert final.input_search_ms == pytest.approx(now / slowdown) and final.input_final_ms == pytest.approx(now)
    message = str(gate_failure(manifest))
    report = "\n".join(search_lines(manifest.search))
    if slowdown > 1:
        assert "30% slower than during the search" in message and "margin (now 10%)" in message
        assert "(+30%): the miss may be the host's speed" in report
    else:
        assert "slower than during the search" not in message and "the miss may be" not in report
