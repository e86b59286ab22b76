"""distill stage: KD / soft-label-only / function matching / feature matching, teacher-logit caching,
resume after a kill, and torchrun (DDP, gloo, 2 CPU processes). Digits and tiny models."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from conftest import ROOT, killed_after_epoch_1_then_resumed, run_cli
from edgekit.data.core import TensorImageDataset
from edgekit.errors import EdgekitError
from edgekit.models import load_model, save_checkpoint
from edgekit.stages import STAGES, StageContext
from edgekit.target import load_target
from edgekit.training import TrainParams, evaluate_module, train
from edgekit.training.distill import input_converter

Distill = STAGES.get("distill")


@pytest.fixture(scope="module")
def teacher(digits):
    """tinycnn trained on digits for a few epochs (~5 s on an idle machine)."""
    torch.manual_seed(0)
    loaded = load_model("builtin:tinycnn", num_classes=10)
    train(loaded.module, loaded.spec, digits, TrainParams(epochs=4, lr=0.1, batch_size=64, crop_pad=1, hflip=False))
    return loaded


@pytest.fixture(scope="module")
def teacher_file(teacher, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(teacher, path)
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # student initialisations are reproducible


def _ctx(model, teacher, data, tmp_path):
    return StageContext(model=model, teacher=copy.deepcopy(teacher), data=data, target=load_target("x86-cpu"),
                        work_dir=tmp_path)


def test_kd_into_smaller_student_reaches_teacher_range(teacher, digits, tmp_path):
    params = Distill.Params(student="builtin:tinycnn?width=8", epochs=4, lr=0.1, batch_size=64, hflip=False,
                            crop_pad=1)
    result = Distill(params).run(_ctx(copy.deepcopy(teacher), teacher, digits, tmp_path))
    teacher_top1 = evaluate_module(teacher.module, teacher.spec, digits.test)["top1"]
    student_top1 = evaluate_module(result.model.module, result.model.spec, digits.test)["top1"]
    assert result.model.arch == "builtin:tinycnn?width=8"
    assert sum(p.numel() for p in result.model.module.parameters()) < 0.3 * sum(
        p.numel() for p in teacher.module.parameters())
    assert student_top1 >= teacher_top1 - 8, (student_top1, teacher_top1)
    assert result.metrics["teacher_logits"].startswith("on the fly (augmentation on)")
    assert result.metrics["labels_used"] is True
    # the teacher ran through OpenVINO at the precision the student trained in (bf16 autocast or fp32)
    assert result.metrics["teacher_runtime"] == ("openvino bf16" if result.metrics["precision"].startswith("bf16")
                                                 else "openvino f32"), result.metrics["precision"]


def test_soft_label_only_needs_no_labels(teacher, digits, tmp_path):
    unlabeled = TensorImageDataset(digits.train.images, np.full(len(digits.train), -1))
    data = copy.copy(digits)
    data.train = unlabeled
    student = load_model("builtin:tinycnn?width=8", num_classes=10)
    params = Distill.Params(student="self", loss="soft", epochs=4, lr=0.1, batch_size=64, hflip=False, crop_pad=1)
    result = Distill(params).run(_ctx(student, teacher, data, tmp_path / "soft"))
    assert evaluate_module(result.model.module, result.model.spec, digits.test)["top1"] > 85
    assert result.metrics["labels_used"] is False
    # The same data with a loss that reads labels fails: the -1 labels really are unusable.
    with pytest.raises((IndexError, RuntimeError)):
        Distill(Distill.Params(loss="kd", alpha=0.5, epochs=1, hflip=False)).run(
            _ctx(load_model("builtin:tinycnn?width=8", num_classes=10), teacher, data, tmp_path / "kd"))


def test_cached_teacher_logits_match_on_the_fly(teacher, digits, tmp_path):
    runs = {}
    for cache in (True, False):
        torch.manual_seed(0)
        student = load_model("builtin:tinycnn?width=8", num_classes=10)
        params = Distill.Params(epochs=2, augment=False, cache_teacher=cache, lr=0.05)
        runs[cache] = Distill(params).run(_ctx(student, teacher, digits, tmp_path / str(cache))).metrics
    assert runs[True]["teacher_logits"] == "cached (augmentation off)"
    assert runs[False]["teacher_logits"].startswith("on the fly")
    for a, b in zip(runs[True]["history"], runs[False]["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)


def test_function_matching_and_feature_distillation(teacher, digits, tmp_path):
    params = Distill.Params(student="builtin:tinycnn?width=8", loss="function_matching", temperature=1.0,
                            epochs=3, lr=0.1, batch_size=64, hflip=False, crop_pad=1, student_layer="8",
                            teacher_layer="8")
    result = Distill(params).run(_ctx(copy.deepcopy(teacher), teacher, digits, tmp_path))
    assert result.metrics["teacher_logits"].startswith("on the fly (function matching")
    assert result.metrics["labels_used"] is False
    assert result.metrics["teacher_runtime"] == "torch"   # the feature hook needs the teacher's own layer 8
    assert evaluate_module(result.model.module, result.model.spec, digits.test)["top1"] > 30  # function matching needs long schedules; 3 epochs only shows it learns
    # hooks are removed after training: the student's forward no longer records features
    assert not result.model.module[8]._forward_hooks


def test_folded_teacher_is_the_same_function_without_batchnorm(teacher, digits):
    """The teacher a KD step runs: BatchNorm folded into the convs, the same logits as the teacher itself (the
    oracle), the teacher left as it was; a module FX cannot trace is used unfolded."""
    from edgekit.data.core import prepared_batches
    from edgekit.training.distill import folded_teacher

    def batchnorms(module):
        return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    before = len(batchnorms(teacher.module))
    folded = folded_teacher(teacher.module)
    assert before > 0 and batchnorms(folded) == [] and len(batchnorms(teacher.module)) == before
    assert not any(p.requires_grad for p in folded.parameters())
    with torch.no_grad():
        for x, _ in prepared_batches(digits.test, teacher.spec, 128):
            expected, got = teacher.module.eval()(x), folded(x)
            assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
            assert torch.equal(got.argmax(1), expected.argmax(1))

    class Branchy(torch.nn.Module):   # data-dependent control flow: FX symbolic tracing fails on it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    branchy = Branchy().eval()
    assert folded_teacher(branchy) is branchy
    hooked = copy.deepcopy(teacher.module)
    hooked.register_forward_hook(lambda *a: None)   # the folded copy would not call it
    assert folded_teacher(hooked) is hooked


def test_openvino_teacher_gives_the_teachers_logits(teacher, digits, monkeypatch):
    """The teacher a KD step runs on the CPU: OpenVINO at f32 gives the PyTorch teacher's logits (the oracle);
    at bf16 the same predictions bar a few; without OpenVINO it falls back to PyTorch with BatchNorm folded,
    and a hooked teacher runs as it is."""
    from edgekit.data.core import prepared_batches
    from edgekit.runtime.base import MissingRuntime
    from edgekit.training import distill
    from edgekit.training.loop import cpu_has_native_bf16

    batches = list(prepared_batches(digits.test, teacher.spec, 128))
    with torch.no_grad():
        expected = torch.cat([teacher.module.eval()(x) for x, _ in batches])
    for bf16 in (False, True) if cpu_has_native_bf16() else (False,):   # the stage asks bf16 only where native
        runner, how = distill.inference_teacher(teacher.module, teacher.spec, teacher.source, bf16)
        assert how == ("openvino bf16" if bf16 else "openvino f32")
        got = torch.cat([runner(x.contiguous(memory_format=torch.channels_last)) for x, _ in batches])
        runner.close()
        assert got.dtype == torch.float32 and got.shape == expected.shape
        if how == "openvino f32":
            assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
        assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.99

    def no_openvino(name):
        raise MissingRuntime(name)

    monkeypatch.setattr(distill, "import_runtime", no_openvino)
    folded, how = distill.inference_teacher(teacher.module, teacher.spec, teacher.source, False)
    assert how == "torch, BatchNorm folded" and folded is not teacher.module
    hooked = copy.deepcopy(teacher.module)
    hooked.register_forward_hook(lambda *a: None)   # neither OpenVINO nor a folded copy would call it
    assert distill.inference_teacher(hooked, teacher.spec, teacher.source, False) == (hooked, "torch")


def test_teacher_sees_the_students_view():
    """A 32 px RGB student and a 28 px grey teacher: the converted batch equals the teacher's own prep."""
    student = load_model("builtin:mobilenetv3s_32").spec
    teacher = load_model("builtin:resnet8").spec
    raw = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    convert = input_converter(student, teacher)
    assert torch.allclose(convert(student.prepare(raw)), teacher.prepare(raw), atol=1e-5)
    assert input_converter(teacher, teacher) is None


def test_bad_distill_params(teacher, digits, tmp_path):
    with pytest.raises(ValidationError, match="both student_layer and teacher_layer"):
        Distill.Params(student_layer="3")
    with pytest.raises(ValidationError):
        Distill.Params(loss="hinton")
    with pytest.raises(EdgekitError, match="student has no layer 'nope'"):
        Distill(Distill.Params(student_layer="nope", teacher_layer="3", epochs=1)).run(
            _ctx(copy.deepcopy(teacher), teacher, digits, tmp_path))


def _write_recipe(path: Path, distill: dict) -> Path:
    path.write_text(json.dumps({"name": "distill-test", "stages": [{"distill": distill}],
                                "compile": {"precisions": ["fp32"]}, "profile": {"runs": 5, "warmup": 1}}))
    return path


def test_cli_bad_distill_recipe_is_one_line(tmp_path):
    recipe = _write_recipe(tmp_path / "r.yaml", {"loss": "hinton"})
    proc = run_cli("compress", "-m", "builtin:tinycnn", "-d", "digits", "-r", str(recipe), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "loss" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_killed_distill_resumes_from_last_epoch(teacher_file, tmp_path):
    """Kill a run once its first epoch checkpoint exists; the same command resumes from it."""
    cache = tmp_path / "cache"
    recipe = _write_recipe(tmp_path / "r.yaml", {"epochs": 6, "batch_size": 4, "lr": 0.02, "hflip": False})
    args = [sys.executable, "-m", "edgekit", "compress", "-m", str(teacher_file), "-d", "digits", "-r", str(recipe),
            "-o", str(tmp_path / "bundle")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEKIT_CACHE": str(cache), "EDGEKIT_QUIET": "0"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(cache.glob("work/*/train_state.pt")):
        assert proc.poll() is None, "run finished before it could be interrupted"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(next(cache.glob("work/*/train_state.pt")), weights_only=True)
    done = state["epoch"]
    assert 1 <= done < 6
    rerun = subprocess.run([*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming distill from epoch {done}" in rerun.stderr
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["stages"][0]["metrics"]["resumed_from_epoch"] == done
    assert manifest["stages"][0]["metrics"]["epochs_run"] == 6


def test_torchrun_two_process_distillation(teacher_file, digits, tmp_path):
    """torchrun --nproc_per_node 2 (gloo on CPU): DDP distillation, one bundle written by rank 0."""
    recipe = _write_recipe(tmp_path / "r.yaml", {"student": "builtin:tinycnn?width=8", "epochs": 3, "lr": 0.1,
                                                 "batch_size": 32, "hflip": False, "crop_pad": 1})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEKIT_CACHE": str(tmp_path / "cache"), "EDGEKIT_QUIET": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "edgekit", "compress", "-m", str(teacher_file), "-d", "digits", "-r", str(recipe),
                           "-o", str(tmp_path / "bundle"), "--json"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    metrics = manifest["stages"][0]["metrics"]
    assert metrics["world_size"] == 2
    # each process trains on its half of the data
    assert metrics["steps_per_epoch"] == len(digits.train) // 2 // 32
    assert manifest["references"]["final"]["accuracy"]["top1"] > 80
    assert len(list(tmp_path.glob(".bundle*"))) == 0 and proc.stdout.count('"run_name"') == 1


@pytest.mark.slow
def test_prune_then_distill_recipe_end_to_end(teacher_file, digits, tmp_path):
    """The shipped recipe through the CLI: prune to <= 50% MACs, distill back, bundle + checkpoint."""
    out = tmp_path / "bundle"
    env = {"EDGEKIT_CACHE": str(tmp_path / "cache")}
    proc = run_cli("compress", "-m", str(teacher_file), "-d", "digits", "-r", "prune-distill", "-o", str(out),
                   "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    stages = {s["name"]: s for s in manifest["stages"]}
    prune = stages["prune"]
    assert prune["macs_after"] <= 0.5 * prune["macs_before"]
    assert prune["metrics"]["ort_latency"]["after"]["p50_ms"] > 0
    distill = stages["distill"]
    assert distill["metrics"]["teacher_logits"] == "on the fly (augmentation on)"
    assert manifest["stages"][0]["split"] == distill["split"] == "val"  # the recipe evaluates on val first
    teacher_val = manifest["stages"][0]["top1"]
    assert distill["top1"] >= teacher_val - 5
    assert manifest["references"]["final"]["macs"] == prune["macs_after"]
    reloaded = torch.load(out / "artifacts" / "model.pt", weights_only=True)
    assert reloaded["arch"] == "builtin:tinycnn"
    # A rerun reuses both cached stages (the pruned checkpoint reloads with its new shapes).
    again = run_cli("compress", "-m", str(teacher_file), "-d", "digits", "-r", "prune-distill", "-o", str(out),
                    "--force", "--json", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    cached = json.loads((out / "manifest.json").read_text())
    assert all(s["cached"] for s in cached["stages"])
    assert cached["references"]["final"]["accuracy"] == manifest["references"]["final"]["accuracy"]


def test_min_steps_gives_a_small_dataset_more_epochs(digits):
    """A recipe tuned for 60k images (few epochs) must still train enough on 1.4k: min_steps extends
    the epochs."""
    loaded = load_model("builtin:tinycnn?width=8", num_classes=10)
    steps_per_epoch = len(digits.train) // 256
    report = train(loaded.module, loaded.spec, digits, TrainParams(epochs=1, batch_size=256, min_steps=30, eval_limit=64))
    assert report.epochs_run == -(-30 // steps_per_epoch) > 1
    assert report.steps_per_epoch == steps_per_epoch


def test_keep_last_returns_the_final_epoch_weights(digits, tmp_path):
    """keep: last leaves the model at the end of the schedule (the checkpoint of the last epoch), not
    at whichever epoch scored best on a small val set; keep: best says which epoch it restored."""
    loaded = load_model("builtin:tinycnn?width=8", num_classes=10)
    report = train(loaded.module, loaded.spec, digits, TrainParams(epochs=3, batch_size=128, keep="last"),
                   checkpoint_dir=tmp_path)
    assert report.kept_epoch == report.epochs_run == 3
    final = torch.load(tmp_path / "train_state.pt", weights_only=True)["model"]
    assert all(torch.equal(v, final[k]) for k, v in loaded.module.state_dict().items())
    best = train(load_model("builtin:tinycnn?width=8", num_classes=10).module, loaded.spec, digits,
                 TrainParams(epochs=3, batch_size=128))
    assert best.kept_epoch == best.best_epoch


def test_val_every_validates_every_nth_epoch_and_the_last(digits, monkeypatch):
    """val_every: N validates after epochs N, 2N, ... and always after the last one (what keep: last
    reports); the other epochs report their loss only and spend nothing on val."""
    import edgekit.training.loop as loop

    calls = []
    real = loop.evaluate_module
    monkeypatch.setattr(loop, "evaluate_module", lambda *a, **k: calls.append(1) or real(*a, **k))
    loaded = load_model("builtin:tinycnn?width=8", num_classes=10)
    report = train(loaded.module, loaded.spec, digits,
                   TrainParams(epochs=5, batch_size=256, keep="last", val_every=2, eval_limit=64))
    assert [h["epoch"] for h in report.history if h["val_top1"] is not None] == [2, 4, 5]
    assert len(calls) == 3
    assert all(h["train_loss"] > 0 for h in report.history) and len(report.history) == 5
    assert report.kept_epoch == 5 and report.best_epoch in (2, 4, 5)


def test_bf16_warns_where_it_would_be_slow(digits, capsys):
    """bf16 autocast is several times slower than fp32 on CPUs without native bf16 and for depthwise convs
    even with it: then training runs in fp32 and says why; a dense model on a bf16 CPU trains without a word."""
    from edgekit.training.loop import cpu_has_native_bf16

    params = TrainParams(epochs=1, batch_size=256, max_steps_per_epoch=1, eval_limit=32, bf16=True)
    depthwise = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    spec = load_model("builtin:tinycnn?width=8", num_classes=10).spec
    train(depthwise, spec, digits, params, description="student")
    err = capsys.readouterr().err
    if cpu_has_native_bf16():
        assert "student: bf16 autocast is several times slower than fp32 for depthwise" in err
        assert "training in fp32" in err
        train(load_model("builtin:tinycnn?width=8", num_classes=10).module, spec, digits, params)
        assert "bf16" not in capsys.readouterr().err
    else:
        assert "student: this CPU has no native bf16" in err and "training in fp32" in err


@pytest.mark.parametrize("loss", ["kd", "function_matching"])  # function matching draws mixup from the global RNG
def test_kill_and_resume_gives_the_weights_of_an_uninterrupted_run(digits, tmp_path, monkeypatch, loss):
    """A 3-epoch distill killed after epoch 1 and resumed ends with the weights of one that ran through:
    the shuffle order, augmentation, mixup, optimizer momentum and LR schedule all continue where they were."""
    params = Distill.Params(student="builtin:tinycnn?width=8", loss=loss, epochs=3, lr=0.05, batch_size=64,
                            hflip=False, crop_pad=1, keep="last", eval_limit=64)
    torch.manual_seed(0)
    teacher = load_model("builtin:tinycnn?width=8", num_classes=10)

    def run(work_dir: Path):
        torch.manual_seed(0)  # as run_stages seeds each stage
        ctx = StageContext(model=copy.deepcopy(teacher), teacher=copy.deepcopy(teacher), data=digits,
                           target=load_target("x86-cpu"), work_dir=work_dir, resume=True)
        return Distill(params).run(ctx)

    straight = run(tmp_path / "straight")
    resumed = killed_after_epoch_1_then_resumed(monkeypatch, run, tmp_path / "killed")

    assert resumed.metrics["resumed_from_epoch"] == 1 and resumed.metrics["epochs_run"] == 3
    assert [h["train_loss"] for h in resumed.metrics["history"]] == pytest.approx(
        [h["train_loss"] for h in straight.metrics["history"]], rel=1e-5)
    a, b = straight.model.module.state_dict(), resumed.model.module.state_dict()
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-6), name
