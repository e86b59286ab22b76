"""Issue 17 methods on digits with tiny models: low-rank factorization (exact at full rank, fewer
MACs at low rank, checkpoint + ONNX round trip), robustness (FGSM/PGD/corruptions), model soups,
ensemble teachers and defensive distillation, and one CLI run of the lowrank recipe."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run_cli
from edgekit.models.onnx_export import export_onnx
from edgekit.backends.onnxruntime import OrtSession
from edgekit.errors import EdgekitError
from edgekit.models import load_checkpoint, load_model, save_checkpoint
from edgekit.models.complexity import count_macs
from edgekit.pruning.lowrank import candidates, factorize_layer, factorize_model, rank_for
from edgekit.models.factorized import replace_layer
from edgekit.recipe import RobustnessSettings, load_recipe
from edgekit.profiling.robustness import (carlini_wagner, corrupt, fgsm, l2_distortion, pgd, pixel_images,
                                         robustness_section)
from edgekit.reports.robustness import robustness_markdown
from edgekit.stages import STAGES, StageContext
from edgekit.target import load_target
from edgekit.training import TrainParams, evaluate_module, train
from edgekit.training.ensemble import EnsembleTeacher
from edgekit.training.evaluate import CPU_EVAL_BATCH

LowRank, Soup, Distill = STAGES.get("lowrank"), STAGES.get("soup"), STAGES.get("distill")


def _trained(digits, seed: int, epochs: int = 4, source: str = "builtin:tinycnn"):
    torch.manual_seed(seed)
    loaded = load_model(source, num_classes=10)
    train(loaded.module, loaded.spec, digits,
          TrainParams(epochs=epochs, lr=0.1, batch_size=64, crop_pad=1, hflip=False, seed=seed))
    return loaded


@pytest.fixture(scope="module")
def teacher(digits):
    return _trained(digits, 0)


def _ctx(model, teacher, data, tmp_path):
    return StageContext(model=model, teacher=copy.deepcopy(teacher), data=data, target=load_target("x86-cpu"),
                        work_dir=tmp_path)


# ---------------------------------------------------------------- low-rank factorization


@pytest.mark.parametrize("method", ["svd", "spatial_svd", "tucker"])
def test_full_rank_factorization_reproduces_each_layer(method):
    torch.manual_seed(0)
    model = load_model("builtin:resnet8", num_classes=10)
    module, spec = model.module.eval(), model.spec
    # resnet8 has 3x3 convs (stride 1 and 2), 1x1 shortcut convs and a Linear head
    x = torch.randn(2, *spec.input_shape)
    with torch.no_grad():
        reference = module(x)
    done = 0
    for cand in candidates(module, spec, method, []):
        if cand.skip:
            assert method == "spatial_svd" and cand.layer.kernel_size == (1, 1)
            continue
        new, _ = factorize_layer(cand, cand.full_rank)
        trial = copy.deepcopy(module)
        replace_layer(trial, cand.path, new)
        with torch.no_grad():
            out = trial(x)
        assert torch.allclose(out, reference, atol=1e-4, rtol=1e-4), (method, cand.path)
        done += 1
    assert done >= 8


@pytest.mark.parametrize("method", ["svd", "spatial_svd", "tucker"])
def test_low_rank_lowers_macs_and_reported_macs_match_torch_counter(method):
    torch.manual_seed(0)
    model = load_model("builtin:resnet8", num_classes=10)
    module, spec = model.module.eval(), model.spec
    before = count_macs(module, spec)
    cands = candidates(module, spec, method, [])
    _, rows = factorize_model(module, cands, rank_ratio=0.25)
    after, per_layer = count_macs(module, spec, per_layer=True)
    assert after < 0.8 * before
    factorized = [r for r in rows if r["status"] == "factorized"]
    assert factorized
    for row in factorized:  # our analytical MACs vs PyTorch's FLOP counter on the new layers
        counted = sum(v for name, v in per_layer.items() if name.startswith(row["layer"] + ".")
                      and name.count(".") == row["layer"].count(".") + 1)
        assert counted == row["macs_after"], row["layer"]
        assert row["macs_after"] < row["macs_before"]


def test_round_to_gives_multiples_or_full_rank():
    model = load_model("builtin:resnet8", num_classes=10)
    for cand in candidates(model.module, model.spec, "tucker", []):
        full = cand.full_rank
        ranks = cand_ranks = rank_for(cand, rank_ratio=0.3, round_to=8)
        pairs = zip(ranks, full) if isinstance(full, tuple) else [(cand_ranks, full)]
        for r, f in pairs:
            assert r == f or (r % 8 == 0 and r < f), (cand.path, r, f)


def test_energy_rank_is_the_fewest_singular_values_holding_the_energy():
    torch.manual_seed(0)
    model = load_model("builtin:resnet8", num_classes=10)
    for cand in candidates(model.module, model.spec, "svd", []):
        w = cand.layer.weight.detach()
        s2 = torch.linalg.svdvals(w.reshape(w.shape[0], -1)).double() ** 2
        share = s2.cumsum(0) / s2.sum()
        r = rank_for(cand, energy=0.6)
        assert share[r - 1] >= 0.6 and (r == 1 or share[r - 2] < 0.6), cand.path


def test_layers_without_gain_are_left_alone():
    torch.manual_seed(0)
    model = load_model("builtin:tinycnn", num_classes=10)
    cands = candidates(model.module, model.spec, "svd", ["0"])
    _, rows = factorize_model(model.module, cands, rank_ratio=1.0)   # full rank never lowers MACs
    assert all(r["status"] != "factorized" for r in rows)
    assert rows[0]["status"] == "ignored (recipe)"
    assert all("not lower" in r["status"] for r in rows[1:])
    with pytest.raises(EdgekitError, match="no layer named"):
        candidates(model.module, model.spec, "svd", ["nope"])


def test_macs_target_checkpoint_roundtrip_and_onnx(teacher, digits, tmp_path):
    model = copy.deepcopy(teacher)
    before = count_macs(model.module, model.spec)
    result = LowRank(LowRank.Params(method="tucker", macs=0.5, measure_latency=True)).run(
        _ctx(model, teacher, digits, tmp_path))
    m = result.metrics
    assert m["macs_target_reached"] and m["macs_after"] <= 0.5 * before == 0.5 * m["macs_before"]
    assert m["macs_after"] == count_macs(result.model.module, result.model.spec)
    assert m["ort_latency"]["before"]["p50_ms"] > 0 and m["ort_latency"]["after"]["p50_ms"] > 0
    assert {"layer", "rank", "macs_before", "macs_after", "params_before", "params_after"} <= set(m["layers"][0])
    assert result.model.arch.startswith("lowrank:")
    path = tmp_path / "lowrank.pt"
    save_checkpoint(result.model, path)
    torch.load(path, map_location="cpu", weights_only=True)  # no pickled module
    loaded = load_checkpoint(path)
    x = result.model.spec.prepare(digits.test.images[:32])
    with torch.no_grad():
        expected = result.model.module.eval()(x).numpy()
        np.testing.assert_allclose(loaded.module(x).numpy(), expected, atol=1e-5)
    export_onnx(loaded.module, loaded.spec, tmp_path / "lowrank.onnx")
    np.testing.assert_allclose(OrtSession(tmp_path / "lowrank.onnx", 1).run(x.numpy()), expected, atol=1e-4)
    # a second factorization on top of the first also rebuilds (plans are appended)
    again = LowRank(LowRank.Params(method="svd", rank_ratio=0.5, measure_latency=False)).run(
        _ctx(loaded, teacher, digits, tmp_path))
    save_checkpoint(again.model, tmp_path / "twice.pt")
    with torch.no_grad():
        np.testing.assert_allclose(load_checkpoint(tmp_path / "twice.pt").module(x).numpy(),
                                   again.model.module(x).numpy(), atol=1e-5)


def test_lowrank_params_need_one_target():
    with pytest.raises(Exception, match="exactly one"):
        LowRank.Params(rank_ratio=0.5, macs=0.5)
    with pytest.raises(Exception, match="exactly one"):
        LowRank.Params()


# ---------------------------------------------------------------- robustness


def test_fgsm_and_pgd_lower_accuracy_and_stay_valid_pixels(teacher, digits):
    x, y = pixel_images(digits.test, 300)
    module, spec = teacher.module.eval(), teacher.spec
    clean = evaluate_module(module, spec, digits.test, limit=300)["top1"]

    def acc(images):
        with torch.no_grad():
            return float((module(spec.prepare(images)).argmax(1) == y).float().mean() * 100)

    assert acc(x) == pytest.approx(clean, abs=0.01)
    eps = 0.1
    adv = fgsm(module, spec, x, y, eps)
    adv_pgd = pgd(module, spec, x, y, eps, 10, torch.Generator().manual_seed(0))
    for images in (adv, adv_pgd):
        assert images.min() >= 0 and images.max() <= 1
        assert (images - x).abs().max() <= eps + 1e-6
    assert acc(adv) < clean - 10
    assert acc(adv_pgd) <= acc(adv) + 1   # the stronger attack is not weaker
    assert torch.equal(fgsm(module, spec, x, y, 0.0), x)
    for name in ("gaussian_noise", "blur", "brightness", "contrast", "jpeg"):
        c1, c3 = corrupt(x, name, 1), corrupt(x, name, 3)
        assert c1.shape == x.shape and 0 <= c3.min() and c3.max() <= 1
        assert (c3 - x).abs().mean() > (c1 - x).abs().mean()   # severity 3 is further from clean


def test_carlini_wagner_l2_fools_a_trained_model_with_small_distortion(teacher, digits):
    x, y = pixel_images(digits.test, 100)
    module, spec = teacher.module.eval(), teacher.spec

    def pred(images):
        with torch.no_grad():
            return module(spec.prepare(images)).argmax(1)

    clean = float((pred(x) == y).float().mean() * 100)
    adv = carlini_wagner(module, spec, x, y, steps=30, c=1.0, search_steps=3, lr=0.05)
    assert adv.min() >= 0 and adv.max() <= 1   # tanh space: valid pixels without clipping
    fooled = (pred(x) == y) & (pred(adv) != y)
    assert float((pred(adv) == y).float().mean() * 100) < clean - 50
    # smaller than FGSM's L2 at an eps that fools far fewer images: CW looks for the least distortion
    eps = 0.1
    fgsm_adv = fgsm(module, spec, x, y, eps)
    assert float((pred(fgsm_adv) == y).float().mean() * 100) > float((pred(adv) == y).float().mean() * 100) + 20
    assert l2_distortion(x, adv)[fooled].mean() < l2_distortion(x, fgsm_adv).mean()
    # wrong labels: the images the model already "misclassifies" come back (all but) unchanged, the
    # others are pushed off the wrong label the least it takes
    wrong = (y + 1) % 10
    adv_wrong = carlini_wagner(module, spec, x, wrong, steps=10, c=1.0, search_steps=1, lr=0.05)
    already = pred(x) != wrong
    assert already.float().mean() > 0.9
    assert l2_distortion(x, adv_wrong)[already].max() < 1e-3


def test_cw_settings_are_validated(tmp_path):
    assert RobustnessSettings(attacks=["fgsm", "cw"], cw_steps=5, cw_c=0.5).cw_steps == 5
    for bad in ({"cw_c": 0}, {"cw_steps": 0}, {"attacks": ["cw2"]}):
        with pytest.raises(ValueError):
            RobustnessSettings(**bad)
    path = tmp_path / "r.yaml"   # from a recipe file: one line naming the key
    path.write_text("compile: {precisions: [fp32]}\nrobustness: {attacks: [fgsm, cw], cw_c: -1}\n")
    with pytest.raises(EdgekitError, match=r"robustness\.cw_c: .*greater than 0"):
        load_recipe(path)


def test_robustness_section_pytorch_models(teacher, digits):
    settings = RobustnessSettings(eps=[0.0, 8 / 255], corruptions=["blur", "jpeg"], severities=[1, 3], limit=100,
                                  attacks=["fgsm", "pgd", "cw"], cw_steps=10, cw_search_steps=2)
    section = robustness_section(teacher, teacher, [], ROOT, digits.test, settings, 1)
    assert [r["model"] for r in section["models"]] == ["input model", "final model"]
    row = section["models"][1]
    assert row["attacks"]["fgsm"][0] == row["clean"]
    assert row["attacks"]["fgsm"][1] < row["clean"]
    assert len(row["corruptions"]["jpeg"]) == 2
    assert len(row["attacks"]["cw"]) == 1 and row["attacks"]["cw"][0] < row["clean"] - 30
    assert row["cw"]["success_rate"] > 30 and 0 < row["cw"]["mean_l2"] < 8   # 8 = sqrt(64): the largest L2
    text = robustness_markdown(section)
    assert "8/255" in text and "CW-L2" in text and f"{row['cw']['mean_l2']:.3f}" in text


# ---------------------------------------------------------------- distill: defensive, ensembles


def test_defensive_distillation_settings_and_run(teacher, digits, tmp_path):
    p = Distill.Params(defensive=True, epochs=1, augment=False)
    assert p.loss == "soft" and p.temperature == 20
    assert Distill.Params(defensive=True, temperature=50).temperature == 50
    with pytest.raises(Exception, match="defensive"):
        Distill.Params(defensive=True, loss="function_matching")
    result = Distill(p).run(_ctx(copy.deepcopy(teacher), teacher, digits, tmp_path))
    assert result.metrics["defensive"] == {"train_temperature": 20.0, "deploy_temperature": 1.0}
    assert result.metrics["labels_used"] is False
    assert "defensive" in result.model.notes


def test_ensemble_soft_targets_average_probabilities(teacher, digits):
    other = _trained(digits, 1, epochs=2)
    t = 3.0
    ens = EnsembleTeacher([teacher.module, other.module], [teacher.spec, other.spec], teacher.spec, [1.0, 3.0], t)
    x = teacher.spec.prepare(digits.val.images[:16])
    with torch.no_grad():
        expected = (0.25 * torch.softmax(teacher.module(x) / t, 1) + 0.75 * torch.softmax(other.module(x) / t, 1))
        got = torch.softmax(ens(x) / t, 1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def _context_counting_teacher_calls(teacher, digits, tmp_path) -> tuple[StageContext, dict]:
    """A distill context whose input-model teacher counts its forward passes (``calls["input"]``)."""
    calls = {"input": 0}
    teacher_copy = copy.deepcopy(teacher)
    teacher_copy.module.register_forward_hook(lambda *a: calls.__setitem__("input", calls["input"] + 1))
    ctx = StageContext(model=load_model("builtin:tinycnn?width=16", num_classes=10), teacher=teacher_copy,
                       data=digits, target=load_target("x86-cpu"), work_dir=tmp_path)
    return ctx, calls


def test_ensemble_distill_caches_teacher_logits_once(teacher, digits, tmp_path):
    other = _trained(digits, 1, epochs=2)
    path = tmp_path / "second.pt"
    save_checkpoint(other, path)
    ctx, calls = _context_counting_teacher_calls(teacher, digits, tmp_path)
    p = Distill.Params(teacher=["input", str(path)], epochs=3, augment=False, batch_size=64, lr=0.2)
    result = Distill(p).run(ctx)
    m = result.metrics
    assert m["teacher_logits"].startswith("cached")
    assert [t["source"] for t in m["teachers"]] == [teacher.source, str(path)]
    # one pass over train (batches of 256) for the cache + one over val for the teachers' top-1 (an ensemble
    # is not the input model alone, so it is scored); none per epoch
    assert calls["input"] == math.ceil(len(digits.train) / 256) + math.ceil(len(digits.val) / CPU_EVAL_BATCH)
    assert m["best_val_top1"] > 50


def test_distill_from_the_input_model_does_not_score_it_again(teacher, digits, tmp_path):
    """The input model as teacher is scored by the pipeline's input reference; the stage runs it only for
    the logits cache (a val pass of a 557-MMAC teacher cost 11 s of a run)."""
    ctx, calls = _context_counting_teacher_calls(teacher, digits, tmp_path)
    m = Distill(Distill.Params(epochs=2, augment=False, batch_size=64, lr=0.2)).run(ctx).metrics
    assert m["teacher_logits"].startswith("cached")
    assert calls["input"] == math.ceil(len(digits.train) / 256)
    assert m["val_top1_teacher"] is None


def test_teacher_weights_validation():
    with pytest.raises(Exception, match="teacher_weights"):
        Distill.Params(teacher=["input", "a.pt"], teacher_weights=[1.0])
    with pytest.raises(Exception, match="teacher_weights"):
        Distill.Params(teacher="a.pt", teacher_weights=[1.0])


# ---------------------------------------------------------------- soups


def test_greedy_soup_never_below_best_ingredient(teacher, digits, tmp_path):
    paths = []
    for seed in range(3):  # ingredients: fine-tunes of one model, saved as checkpoints
        torch.manual_seed(seed)
        ft = copy.deepcopy(teacher)
        train(ft.module, ft.spec, digits, TrainParams(epochs=1, lr=0.02, batch_size=64, crop_pad=1, hflip=False,
                                                      seed=seed + 10))
        paths.append(tmp_path / f"ingredient{seed}.pt")
        save_checkpoint(ft, paths[-1])
    result = Soup(Soup.Params(sources=[str(p) for p in paths], mode="greedy")).run(
        _ctx(copy.deepcopy(teacher), teacher, digits, tmp_path))
    best_ingredient = max(evaluate_module(load_checkpoint(p).module, teacher.spec, digits.val)["top1"] for p in paths)
    soup_val = evaluate_module(result.model.module, result.model.spec, digits.val)["top1"]
    assert soup_val >= best_ingredient
    assert soup_val == pytest.approx(result.metrics["soup_val_top1"])
    assert len(result.metrics["ingredients"]) == 3
    assert all("test_top1" in r for r in result.metrics["ingredients"])
    assert "soup_test_top1" in result.metrics


def test_uniform_soup_of_fine_tunes_recomputes_batchnorm(teacher, digits, tmp_path):
    p = Soup.Params(ingredients=2, vary=["seed", "lr", "augment"], mode="uniform", epochs=1, lr=0.02,
                    batch_size=64, crop_pad=1, hflip=False)
    result = Soup(p).run(_ctx(copy.deepcopy(teacher), teacher, digits, tmp_path))
    m = result.metrics
    assert m["chosen"] == [r["ingredient"] for r in m["ingredients"]]
    assert "recomputed" in m["batchnorm"]
    assert "augment off" in m["ingredients"][1]["ingredient"]
    assert m["soup_val_top1"] > 50


def test_soup_rejects_mixed_architectures(teacher, digits, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(teacher, a)
    save_checkpoint(load_model("builtin:tinycnn?width=16", num_classes=10), b)
    with pytest.raises(EdgekitError, match="not the same architecture"):
        Soup(Soup.Params(sources=[str(a), str(b)])).run(_ctx(copy.deepcopy(teacher), teacher, digits, tmp_path))


# ---------------------------------------------------------------- CLI


@pytest.mark.slow   # the lowrank stage runs in the default tier in-process (tests/test_registry_interfaces.py)
def test_cli_lowrank_recipe_end_to_end(tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes" / "lowrank-distill.yaml").read_text())
    recipe["stages"][2]["distill"]["epochs"] = 1
    # the factorized model also goes through QAT and INT8 compilation like any model
    recipe["stages"].insert(3, {"quantize": {"method": "qat", "always": True, "epochs": 1, "lr": 0.005}})
    recipe["compile"]["precisions"] = ["fp32", "int8"]
    recipe["robustness"] = {"eps": [0.0, 8 / 255], "corruptions": ["gaussian_noise"], "severities": [2],
                            "limit": 100, "pgd_steps": 3}
    path = tmp_path / "lowrank.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "bundle"
    proc = run_cli("compress", "-m", "builtin:tinycnn", "-d", "digits", "-r", str(path), "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    stage = next(s for s in manifest["stages"] if s["name"] == "lowrank")
    assert stage["metrics"]["macs_after"] <= 0.5 * stage["metrics"]["macs_before"]
    assert "speedup_p50" in stage["metrics"]["ort_latency"]
    rows = manifest["robustness"]["models"]
    assert rows[0]["model"] == "input model" and rows[-1]["kind"] == "artifact"
    assert rows[-1]["attack"].startswith("transfer")
    assert "## Robustness" in (out / "report.md").read_text()
    loaded = load_checkpoint(out / "artifacts" / "model.pt")
    assert loaded.arch.startswith("lowrank:")
    int8 = [a for a in manifest["artifacts"] if a["precision"] == "int8"]
    assert {a["backend"] for a in int8} >= {"onnxruntime", "openvino"}
    assert all(a["metrics"]["agreement"]["top1_agreement"] > 80 for a in int8)
    qat = next(s for s in manifest["stages"] if s["name"] == "quantize")
    assert qat["metrics"]["qat"] is True and qat["metrics"]["tensors_copied"] > 0
