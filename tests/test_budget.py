"""``edgekit compress --latency-budget-ms``: the search times untrained pruned candidates through the target's
runtime (here, on a device over SSH, or estimated and labelled), trains the least-compressed one that fits
once, and re-checks the budget on the deployed artifact.

The model is the offline demo's digits teacher (tinycnn, 1.5 MMACs); the budgets are set from the input
model's own latency, computed here independently of the search, so that pruning is needed."""

from __future__ import annotations

import sys

import json
from pathlib import Path

import pytest

from conftest import run_cli
from sshd_server import ssh_args

RECIPE = """name: budget-test
stages:
  - distill: {epochs: 1, lr: 0.05}
  - evaluate: {split: test}
budget:
  macs: [1.0, 0.6, 0.35, 0.2]
  round_to: [null]
  precisions: [fp32]
  backends: [onnxruntime]
  runs: 30
  max_seconds: 1
compile:
  precisions: [fp32]
profile: {warmup: 5, runs: 100, max_seconds: 2}
"""


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "budget.yaml"
    path.write_text(RECIPE)
    return path


def _teacher():
    from edgekit.models import load_model
    from edgekit.training.default_teacher import default_teacher_path

    return load_model(str(default_teacher_path()))


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _assert_search_consistent(m: dict, basis_prefix: str) -> dict:
    """The behaviour every search must have, whatever timed it."""
    search = m["search"]
    assert search["trace"] and all(c["basis"].startswith(basis_prefix) for c in search["trace"])
    chosen = search["chosen"]
    assert chosen["level"] < 1.0, "the budget is below the input model's latency: it must be pruned"
    assert chosen["p50_ms"] <= search["aim_ms"] < search["budget_ms"]
    # the choice keeps the most MACs among the candidates that fit; every bigger candidate was too slow
    bigger = [c for c in search["trace"] if c["macs"] > chosen["macs"]]
    assert bigger and not any(c["fits"] for c in bigger)
    # the trained model has the chosen architecture, and the plan pruned to its level
    assert m["references"]["final"]["macs"] == chosen["macs"]
    prune = next(s for s in m["stages"] if s["name"] == "prune")
    assert prune["params"]["macs"] == chosen["level"]
    assert search["final"]["macs_match"] is True
    return search


def test_a_local_budget_is_judged_on_the_runner_that_timed_the_search(tmp_path):
    """x86-cpu, measured here: the bundle's files are re-timed by the search's runner (a local, latency-only
    bench entry), and the budget check, the gates and the host's-speed comparison read that entry."""
    recipe = tmp_path / "local.yaml"
    recipe.write_text(RECIPE.replace("backends: [onnxruntime]", "backends: [openvino]"))
    out = tmp_path / "local"
    budget = 1000.0   # every candidate fits: this test is about the re-check, not the search
    r = run_cli("compress", "-r", str(recipe), "-t", "x86-cpu", "--latency-budget-ms", str(budget), "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    m = _manifest(out)
    local = [b for b in m["benchmarks"] if b["where"] == "local"]
    assert len(local) == 1 and local[0]["data"]["note"].startswith("latency only")
    results = local[0]["results"]
    final = m["search"]["final"]
    assert final["basis"] == "measured here" and final["met"]
    assert final["p50_ms"] == results[final["artifact"]]["latency"]["p50_ms"]   # the runner's number, not compress's
    assert all("accuracy" not in v for v in results.values())
    gate = next(g for g in m["gates"]["results"] if g["artifact"] == final["artifact"] and "latency" in g["gate"])
    assert gate["value"] == final["p50_ms"]
    # the input model's own file, re-timed by the runner, against the search's unpruned OpenVINO FP32 candidate
    input_artifact = next(a for a in m["artifacts"] if a["meta"].get("split_part") == "input")
    searched = next(c for c in m["search"]["trace"] if c["level"] == 1.0 and c["precision"] == "fp32"
                    and c["backend"] == input_artifact["backend"] == "openvino")
    assert final["input_search_ms"] == searched["p50_ms"]
    assert final["input_final_ms"] == results[input_artifact["name"]]["latency"]["p50_ms"]
    assert local[0]["settings"].get("takes") is None and final.get("takes_ms") is None   # met at the first take: once
    assert all("retimed_p50_ms" not in v["latency"] for v in results.values())


def test_a_budget_missed_at_the_first_take_is_judged_on_the_median_of_three(tmp_path):
    """A bundle whose deployed file misses the budget at its re-timing is timed twice more, and every decision
    reads each file's median p50 of the three takes (one busy moment of a shared host read a ½-budget bundle
    40% slow, vs_peers 2026-12-05). The miss here is real: the bundle of a met budget, judged against one
    1000 times tighter than any file runs."""
    from edgekit.manifest import read_manifest
    from edgekit.pipeline import BUDGET_TAKES, retime_for_budget

    recipe = tmp_path / "local.yaml"
    recipe.write_text(RECIPE.replace("backends: [onnxruntime]", "backends: [openvino]"))
    out = tmp_path / "local"
    r = run_cli("compress", "-r", str(recipe), "-t", "x86-cpu", "--latency-budget-ms", "1000", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    m = _manifest(out)
    fastest = min(v["latency"]["p50_ms"] for b in m["benchmarks"] if b["where"] == "local" for v in b["results"].values())
    m["search"]["budget_ms"] = fastest / 1000
    (out / "manifest.json").write_text(json.dumps(m))
    manifest = retime_for_budget(out, read_manifest(out).recipe, 1)
    m = _manifest(out)
    local = [b for b in m["benchmarks"] if b["where"] == "local"]
    assert len(local) == 1 and local[0]["settings"]["takes"] == BUDGET_TAKES == 3
    for result in local[0]["results"].values():
        takes = result["latency"]["retimed_p50_ms"]
        assert len(takes) == 3 and result["latency"]["p50_ms"] == sorted(takes)[1]
    final = m["search"]["final"]
    assert final["met"] is False and manifest.search.final.met is False
    assert final["p50_ms"] == local[0]["results"][final["artifact"]]["latency"]["p50_ms"]
    assert final["takes_ms"] == local[0]["results"][final["artifact"]]["latency"]["retimed_p50_ms"]
    assert "the median of 3 timings" in (out / "report.md").read_text()


def test_rpi5_budget_without_host_runs_on_estimates_and_says_so(recipe, tmp_path):
    from edgekit.profiling.estimate import estimate_module
    from edgekit.target import load_target

    teacher = _teacher()
    input_ms = estimate_module(teacher.module, teacher.spec, load_target("rpi5"), "fp32")["latency_ms"]
    budget = round(0.8 * input_ms, 4)
    out = tmp_path / "rpi5"
    r = run_cli("compress", "-t", "rpi5", "-r", str(recipe), "--latency-budget-ms", str(budget), "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no --host was given" in r.stderr and "ESTIMATE" in r.stderr
    m = _manifest(out)
    search = _assert_search_consistent(m, "estimated (rpi5)")
    assert search["basis"] == "estimated (rpi5)"
    final = search["final"]
    assert final["basis"].startswith("estimated") and final["met"] and final["p50_ms"] <= budget
    report = (out / "report.md").read_text()
    assert "## Latency budget search" in report and "Timing basis: estimated (rpi5)" in report
    assert (out / "search.svg").is_file()


def test_budget_measured_on_the_loopback_device_during_the_search(recipe, tmp_path, sshd):
    from edgekit.models import load_model
    from edgekit.profiling.remote import SshDevice
    from edgekit.recipe import load_recipe
    from edgekit.search.timing import RunnerTimer
    from edgekit.target import load_target

    # builtin:resnet18_28 (random weights, 28.6 MMACs): big enough that pruning shows in latency; resnet8
    # (9.3 MMACs) is overhead-bound on ONNX Runtime (its 20% level ran no faster than the input model on a
    # Zen 5). The budget comes from the input model timed on the "device" itself, through the same runner
    # (an in-process ONNX Runtime session read 0.207 ms where the runner on the loopback device read 0.241).
    model = load_model("builtin:resnet18_28")
    # channels kept multiples of 16: odd counts run slower than the unpruned model on ONNX Runtime
    recipe = tmp_path / "budget-x16.yaml"
    recipe.write_text(RECIPE.replace("round_to: [null]", "round_to: [16]"))
    device = SshDevice.parse(f"{sshd.user}@127.0.0.1", port=sshd.port, identity=sshd.user_key,
                             known_hosts=sshd.known_hosts, python=sys.executable)
    timer = RunnerTimer(load_target("rpi5"), load_recipe(str(recipe)), None, runs=60, max_seconds=2, threads=None,
                        remote=device)
    with timer.session():   # the quickest of 3: the loopback runner's p50 varies by 20-30% on 2 shared cores
        timings = [timer.time(model, [("onnxruntime", "fp32")])[0].p50_ms for _ in range(3)]
    assert None not in timings
    input_ms = min(timings)
    budget = round(0.85 * input_ms, 4)   # the 35% and 20% levels run well under it; the choice is re-timed
    out = tmp_path / "device"
    r = run_cli("compress", "-m", "builtin:resnet18_28", "-d", "digits", "-t", "rpi5", "-r", str(recipe),
                "--latency-budget-ms", str(budget), "-o", str(out), *ssh_args(sshd))
    where = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    if r.returncode == 2 and "no candidate meets" in r.stderr:
        error = next(line for line in r.stderr.splitlines() if line.startswith("error"))
        pytest.skip(f"this host is too loaded to time the candidates under {budget} ms: {error[:400]}")
    assert r.returncode in (0, 3), r.stderr[-2000:]
    m = _manifest(out)
    search = _assert_search_consistent(m, f"measured on the device ({where})")
    assert "no --host was given" not in r.stderr
    assert any(b["where"] == where for b in m["benchmarks"]), "the bundle was benched on the device afterwards"
    assert search["final"]["basis"] == f"measured on the device ({where})"
    assert search["final"]["met"] == (r.returncode == 0)
    assert list(sshd.device_tmp.iterdir()) == [], "files left in the device's temp folder"

    # A miss on the device is judged on the median of three takes there too, the first take's accuracy kept:
    # the same bundle against a budget 1000 times tighter than any file ran on the device.
    from edgekit.pipeline import BUDGET_TAKES, bench_for_budget
    from edgekit.profiling.bench import BenchSettings

    on_device = next(b for b in m["benchmarks"] if b["where"] == where)
    m["search"]["budget_ms"] = min(v["latency"]["p50_ms"] for v in on_device["results"].values()) / 1000
    (out / "manifest.json").write_text(json.dumps(m))
    bench_for_budget(out, BenchSettings(), remote=device)
    m = _manifest(out)
    entries = [b for b in m["benchmarks"] if b["where"] == where]
    assert len(entries) == 1 and entries[0]["settings"]["takes"] == BUDGET_TAKES == 3
    for name, result in entries[0]["results"].items():
        takes = result["latency"]["retimed_p50_ms"]
        assert len(takes) == 3 and result["latency"]["p50_ms"] == sorted(takes)[1]
        assert result["accuracy"]["top1"] == on_device["results"][name]["accuracy"]["top1"]   # scored on the device
    final = m["search"]["final"]
    assert final["met"] is False
    assert final["takes_ms"] == entries[0]["results"][final["artifact"]]["latency"]["retimed_p50_ms"]
    assert list(sshd.device_tmp.iterdir()) == []


def test_a_student_architecture_from_the_list_is_chosen_when_it_keeps_the_most_macs_within_budget(tmp_path):
    """``--budget-student``: a smaller architecture is one more candidate, timed unpruned on the same clock (the
    rpi5 estimate: deterministic, so the oracle below is computed independently of the search). The budget lies
    between the input model's latency and the narrow student's; the narrow student (a checkpoint file: trained
    weights) keeps more MACs than the input pruned to 20% (the only pruning level offered), the wide one is too
    slow: the narrow one must be chosen, the recipe's prune stage dropped and its distillation retargeted."""
    from edgekit.models import load_model, save_checkpoint
    from edgekit.models.complexity import count_macs
    from edgekit.profiling.estimate import estimate_module
    from edgekit.target import load_target

    rpi5, teacher = load_target("rpi5"), _teacher()
    narrow_net = load_model("builtin:tinycnn?width=16", num_classes=10)
    narrow_net.notes = {"weights": "a student checkpoint (test)"}
    narrow, wide = str(tmp_path / "narrow.pt"), "builtin:tinycnn?width=64"
    save_checkpoint(narrow_net, Path(narrow))

    def estimate(loaded):
        return estimate_module(loaded.module, loaded.spec, rpi5, "fp32")["latency_ms"]

    students = {s: load_model(s, num_classes=10, input_size=(8, 8)) for s in (narrow, wide)}
    input_ms, narrow_ms, wide_ms = estimate(teacher), estimate(students[narrow]), estimate(students[wide])
    assert narrow_ms < input_ms < wide_ms, (narrow_ms, input_ms, wide_ms)
    aim = (narrow_ms + input_ms) / 2
    budget = round(aim / 0.9, 4)                 # the default margin: candidates must fit budget x 0.9
    recipe = tmp_path / "students.yaml"
    recipe.write_text(RECIPE.replace("stages:\n", "stages:\n  - prune: {mode: structured, macs: 0.5}\n")
                      .replace("macs: [1.0, 0.6, 0.35, 0.2]", "macs: [1.0, 0.2]"))
    out = tmp_path / "student"
    r = run_cli("compress", "-t", "rpi5", "-r", str(recipe), "--latency-budget-ms", str(budget),
                "--budget-student", narrow, "--budget-student", wide, "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    m = _manifest(out)
    search = m["search"]
    by_model = {c.get("student"): c for c in search["trace"] if c["level"] == 1.0}
    assert set(by_model) == {None, narrow, wide}
    assert by_model[wide]["random_init"] and not by_model[narrow].get("random_init")
    assert not by_model[None]["fits"] and not by_model[wide]["fits"] and by_model[narrow]["fits"]
    assert by_model[narrow]["p50_ms"] == pytest.approx(narrow_ms, rel=1e-3)
    # the 20% level keeps fewer MACs than the narrow student, which fits: it cannot be chosen, so it was pruned
    # (to read its MACs) but not timed
    pruned = [c for c in search["trace"] if c.get("student") is None and c["level"] < 1.0]
    assert pruned == [] and search["untimed"] == 1
    assert search["chosen"]["student"] == narrow
    # the plan: no prune stage, the distillation trains the student from the input model
    names = [s["name"] for s in m["stages"]]
    assert "prune" not in names
    distill = next(s for s in m["stages"] if s["name"] == "distill")
    assert distill["params"]["student"] == narrow
    # what was trained and deployed is the student's architecture, and the budget holds on it
    assert m["references"]["final"]["macs"] == count_macs(students[narrow].module, students[narrow].spec)
    assert search["final"]["macs_match"] is True and search["final"]["met"]
    report = (out / "report.md").read_text()
    assert f"chosen: **student {narrow}, onnxruntime fp32**" in report


def test_a_random_init_student_is_chosen_only_when_no_trained_candidate_fits():
    """A student with random weights is the way to a budget pruning cannot reach, not a rival of pruning: with a
    pruned level that fits it must lose, even keeping more MACs; with no pruned level fitting it is chosen. The
    oracle is the rpi5 estimate of each model, computed here."""
    from edgekit.data import load_data
    from edgekit.models import load_model
    from edgekit.profiling.estimate import estimate_module
    from edgekit.recipe import BudgetSettings, Recipe
    from edgekit.search.budget import Search
    from edgekit.search.timing import EstimateTimer
    from edgekit.target import load_target

    target, teacher, data = load_target("rpi5"), _teacher(), load_data("digits")
    student = "builtin:tinycnn?width=16"

    def estimate(loaded):
        return estimate_module(loaded.module, loaded.spec, target, "fp32")["latency_ms"]

    def search(macs):
        budget = BudgetSettings(latency_ms=aim, margin=0.0, macs=macs, round_to=[None], precisions=["fp32"],
                                students=[student])
        s = Search(teacher, data, Recipe(), target, budget, EstimateTimer(target), [("onnxruntime", "fp32")],
                   measured=False)
        return s, s.run()

    student_ms = estimate(load_model(student, num_classes=10, input_size=(8, 8)))
    aim = (student_ms + estimate(teacher)) / 2
    probe, _ = search([1.0, 0.2])
    twenty = next(c for c in probe.trace if c.level == 0.2)
    random_student = next(c for c in probe.trace if c.student)
    assert random_student.random_init and random_student.fits and twenty.fits
    assert random_student.macs > twenty.macs, "the student keeps more MACs, and still loses to pruning"
    assert probe.trace[[c.chosen for c in probe.trace].index(True)] is twenty
    _, chosen = search([1.0])                   # nothing but the unpruned input model, which misses
    assert chosen.student == student and chosen.random_init


def test_the_bound_skips_only_levels_that_cannot_be_chosen():
    """Branch and bound across roundings: a level keeping no more MACs than a candidate already fitting is not
    timed. The oracle is a brute force: every (level, rounding) estimated on rpi5 (deterministic), the most MACs
    within the aim. The bounded search must choose a candidate with those MACs while timing fewer levels."""
    from edgekit.data import load_data
    from edgekit.models import load_model
    from edgekit.models.complexity import count_macs
    from edgekit.profiling.estimate import estimate_module
    from edgekit.recipe import BudgetSettings, Recipe
    from edgekit.search.budget import Search
    from edgekit.search.timing import EstimateTimer
    from edgekit.target import load_target

    target, data = load_target("rpi5"), load_data("digits")
    model = load_model("builtin:resnet8", num_classes=10)
    levels, roundings = [1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12], [None, 8, 4]
    budget = BudgetSettings(latency_ms=1.0, margin=0.0, macs=levels, round_to=roundings, precisions=["fp32"])
    probe = Search(model, data, Recipe(), target, budget, EstimateTimer(target), [("onnxruntime", "fp32")],
                   measured=False)
    every = {}
    for level in levels:
        for round_to in ([None] if level == 1.0 else roundings):
            pruned = probe.prune(level, round_to)
            every[(level, round_to)] = (count_macs(pruned.module, pruned.spec),
                                        estimate_module(pruned.module, pruned.spec, target, "fp32")["latency_ms"])
    times = sorted(ms for _, ms in every.values())
    aim = times[len(times) // 2]                     # half of the candidates fit
    best = max(macs for macs, ms in every.values() if ms <= aim)
    search = Search(model, data, Recipe(), target, budget.model_copy(update={"latency_ms": aim}),
                    EstimateTimer(target), [("onnxruntime", "fp32")], measured=False)
    chosen = search.run()
    assert chosen.macs == best
    assert search.skipped and len(search.trace) + len(search.skipped) <= len(every)
    assert all(every[(level, round_to)][0] <= best for _, level, round_to in search.skipped)


def test_a_budget_plan_builds_int8_as_the_search_timed_it(tmp_path):
    """The search times plain post-training INT8 files; the plan must build the same kind. With explicit int8 and
    a bound, compile otherwise runs NNCF's accuracy control, which reverts layers to float: a ½-budget bundle's
    OpenVINO INT8 file then ran 0.87 ms where its candidate had run 0.38 ms, and the budget was missed. The same
    recipe without a budget still gets accuracy control (so the setting, not the model, decides)."""
    recipe = tmp_path / "int8.yaml"
    recipe.write_text(RECIPE.replace("precisions: [fp32]\n  backends: [onnxruntime]", "precisions: [int8]\n  backends: [openvino]")
                      .replace("compile:\n  precisions: [fp32]", "compile:\n  precisions: [int8]\n  backends: [openvino]\n"
                               "  max_accuracy_drop: 0.5"))
    budgeted, plain = tmp_path / "budgeted", tmp_path / "plain"
    r = run_cli("compress", "-t", "x86-cpu", "-r", str(recipe), "--latency-budget-ms", "1000", "-o", str(budgeted))
    assert r.returncode == 0, r.stderr[-2000:]
    m = _manifest(budgeted)
    assert m["recipe"]["compile"]["max_accuracy_drop"] == 0.5 and m["recipe"]["compile"]["accuracy_control"] is False
    ov_int8 = next(a for a in m["artifacts"] if a["name"] == "openvino-int8")
    assert ov_int8["meta"]["method"] == "nncf.quantize"
    text = recipe.read_text()
    no_budget = tmp_path / "no-budget.yaml"
    no_budget.write_text(text.split("budget:")[0] + "compile:" + text.split("compile:")[1])
    r = run_cli("compress", "-t", "x86-cpu", "-r", str(no_budget), "-o", str(plain))
    assert r.returncode == 0, r.stderr[-2000:]
    ov_int8 = next(a for a in _manifest(plain)["artifacts"] if a["name"] == "openvino-int8")
    assert ov_int8["meta"]["method"] == "nncf.quantize_with_accuracy_control"


def test_impossible_budget_is_one_line_and_writes_nothing(recipe, tmp_path):
    out = tmp_path / "none"
    r = run_cli("compress", "-t", "rpi5", "-r", str(recipe), "--latency-budget-ms", "0.00001", "-o", str(out))
    assert r.returncode == 2
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "no candidate meets the 1e-05 ms budget on rpi5" in lines[0], r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_bad_budget_values_are_usage_errors(recipe, tmp_path):
    r = run_cli("compress", "-r", str(recipe), "--latency-budget-ms", "-1", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "--latency-budget-ms -1 is not positive" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.replace("round_to: [null]", "round_to: []"))
    r = run_cli("compress", "-r", str(bad), "--latency-budget-ms", "1", "-o", str(tmp_path / "y"))
    assert r.returncode == 2 and "budget.round_to" in r.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(RECIPE.split("budget:")[0])
    r = run_cli("compress", "-r", str(plain), "--budget-student", "builtin:resnet8", "-o", str(tmp_path / "z"))
    assert r.returncode == 2 and "--budget-student needs a latency budget" in r.stderr
    r = run_cli("compress", "-t", "rpi5", "-r", str(recipe), "--latency-budget-ms", "1", "--budget-student",
                "builtin:nosuchnet", "-o", str(tmp_path / "w"))
    assert r.returncode == 2 and "nosuchnet" in r.stderr and "Traceback" not in r.stderr
    assert not any((tmp_path / d).exists() for d in "xyzw")


def test_a_choice_that_misses_when_re_timed_gives_way_to_the_next_level():
    """A measured choice is re-timed ``budget.confirm`` times and judged on its slowest p50 (how the ½ budget
    of vs_peers was missed on a busy host: one quiet timing in the search). The timer here is the estimate
    with every re-timing slowed by a factor, a stand-in for a host that got busy: real load is not
    reproducible in a test."""
    from edgekit.data import load_data
    from edgekit.models import load_model
    from edgekit.profiling.estimate import estimate_module
    from edgekit.recipe import BudgetSettings, Recipe
    from edgekit.search.budget import Search
    from edgekit.target import load_target

    target, model, data = load_target("x86-cpu"), load_model("builtin:resnet8", num_classes=10), load_data("digits")
    budget = BudgetSettings(latency_ms=1.0, margin=0.0, macs=[1.0, 0.6, 0.35, 0.2], round_to=[None],
                            precisions=["fp32"], confirm=2)

    timer = busy_on_retiming(target)
    probe = Search(model, data, Recipe(), target, budget, timer, [("onnxruntime", "fp32")], measured=True)
    est = {level: estimate_module(probe.prune(level, None).module, model.spec, target, "fp32")["latency_ms"]
           for level in (1.0, 0.6, 0.35)}
    assert est[1.0] > est[0.6] > est[0.35], est
    # the aim is 60%'s first timing: it fits once, misses when re-timed; 35% fits even when slowed
    timer.factor = (1 + est[0.6] / est[0.35]) / 2
    timer.seen.clear()
    search = Search(model, data, Recipe(), target, budget.model_copy(update={"latency_ms": est[0.6]}), timer,
                    [("onnxruntime", "fp32")], measured=True)
    chosen = search.run()
    sixty = next(c for c in search.trace if c.level == 0.6)
    assert len(sixty.retimed_ms) == 2 and not sixty.fits and not sixty.chosen
    assert sixty.p50_ms == pytest.approx(est[0.6] * timer.factor)
    assert chosen.level == 0.35 and chosen.chosen and len(chosen.retimed_ms) == 2
    assert chosen.p50_ms == max(chosen.retimed_ms) <= search.aim
    # an estimate-based search (measured=False) takes its first timing as it is: nothing to re-time
    timer.seen.clear()
    plain = Search(model, data, Recipe(), target, budget.model_copy(update={"latency_ms": est[0.6]}), timer,
                   [("onnxruntime", "fp32")], measured=False).run()
    assert plain.level == 0.6 and plain.retimed_ms == []


@pytest.mark.slow   # three prunings of a tiny CNN: 20 s of CPU on the loaded 2-core test host
def test_when_every_candidate_misses_on_re_timing_a_smaller_level_is_tried_before_refusing():
    """The 1/8 budget of vs_peers resnet-large was refused (issue 39) because the fastest candidate fitted once,
    then missed when re-timed by a hair, with nothing smaller in the list. A level below the budget's smallest
    must be tried first; only when that misses too is the budget refused, in one line. The timer is the
    estimate with re-timings slowed, as in the test above (real load is not reproducible in a test)."""
    from edgekit.data import load_data
    from edgekit.errors import EdgekitError
    from edgekit.models import load_model
    from edgekit.profiling.estimate import estimate_module
    from edgekit.recipe import BudgetSettings, Recipe
    from edgekit.search.budget import EXTEND_FACTOR, Search
    from edgekit.target import load_target

    target, model, data = load_target("x86-cpu"), load_model("builtin:tinycnn", num_classes=10), load_data("digits")
    budget = BudgetSettings(latency_ms=1.0, margin=0.0, macs=[1.0, 0.35], round_to=[None], precisions=["fp32"],
                            confirm=2)

    timer = busy_on_retiming(target)
    probe = Search(model, data, Recipe(), target, budget, timer, [("onnxruntime", "fp32")], measured=True)
    smaller = round(0.35 * EXTEND_FACTOR, 4)
    est = {level: estimate_module(probe.prune(level, None).module, model.spec, target, "fp32")["latency_ms"]
           for level in (0.35, smaller)}
    assert est[0.35] > est[smaller], est
    # 35%, the smallest listed level, fits at its first timing only; the next smaller one fits even slowed
    timer.factor = (1 + est[0.35] / est[smaller]) / 2
    search = Search(model, data, Recipe(), target, budget.model_copy(update={"latency_ms": est[0.35]}), timer,
                    [("onnxruntime", "fp32")], measured=True)
    chosen = search.run()
    listed = next(c for c in search.trace if c.level == 0.35)
    assert listed.retimed_ms and not listed.fits
    assert chosen.level == smaller and chosen.chosen and chosen.p50_ms <= search.aim
    # an aim nothing reaches even at its first timing: refused, in one line (no smaller level is tried: nothing
    # fitted once, so the list's end is not what refused it)
    timer.seen.clear()
    impossible = Search(model, data, Recipe(), target, budget.model_copy(update={"latency_ms": est[smaller] / 50,
                                                                              "macs": [1.0]}),
                        timer, [("onnxruntime", "fp32")], measured=True)
    with pytest.raises(EdgekitError) as err:
        impossible.run()
    assert "\n" not in str(err.value) and "no candidate meets" in str(err.value)


def busy_on_retiming(target):
    """The estimate timer with every re-timing of a model slowed by its ``factor`` (set by the test): a host that
    got busy between the first timing and the re-check, which real load cannot reproduce on demand."""
    from edgekit.search.timing import EstimateTimer, Timing

    class BusyOnReTiming(EstimateTimer):
        factor = 1.0
        seen: dict[int, int] = {}

        def time(self, loaded, combos):
            key = sum(p.numel() for p in loaded.module.parameters())
            self.seen[key] = self.seen.get(key, 0) + 1
            slow = self.factor if self.seen[key] > 1 else 1.0
            return [Timing(t.p50_ms * slow, t.basis) for t in super().time(loaded, combos)]

    return BusyOnReTiming(target)
