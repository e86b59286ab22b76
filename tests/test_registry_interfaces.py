"""Every registered stage and backend against its interface, driven by the registries (timm's pattern): a new
stage or backend is checked here the day it is registered, with no test written for it by name."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from edgekit.backends import BACKENDS, CompileRequest
from edgekit.calibration import draw_calibration
from edgekit.models import load_model
from edgekit.models.loaded import state_hash
from edgekit.stages import STAGES, StageContext, StageResult
from edgekit.target import list_targets

# Settings for a stage whose defaults are not a complete request (a pruning or rank target must be chosen),
# and short schedules for the training stages. A registered stage missing here runs with its defaults.
SMALL_SETTINGS = {
    "prune": {"mode": "structured", "ratio": 0.25},
    "lowrank": {"rank_ratio": 0.5},
    "distill": {"epochs": 1},
    "finetune": {"epochs": 1},
    "soup": {"epochs": 1},
    "quantize": {"epochs": 1, "max_steps_per_epoch": 2, "calibration_size": 32, "eval_limit": 64},
    "bottleneck": {"split_at": "5", "channels": 2, "stride": 2, "encoder_width": 16,
                   "head_distillation": {"epochs": 1}, "finetune": {"epochs": 1}},
}


@pytest.fixture(scope="module")
def tiny(digits):
    torch.manual_seed(0)
    return load_model("builtin:tinycnn", num_classes=digits.num_classes)


@pytest.mark.parametrize("name", STAGES.names())
def test_every_stage_takes_a_model_and_returns_a_working_one(name, tiny, digits, tmp_path):
    from edgekit.target import load_target

    stage_cls = STAGES.get(name)
    params = stage_cls.Params(**SMALL_SETTINGS.get(name, {}))
    model, teacher = copy.deepcopy(tiny), copy.deepcopy(tiny)
    teacher_state = state_hash(teacher.module)
    result = stage_cls(params).run(StageContext(model=model, teacher=teacher, data=digits,
                                                target=load_target("x86-cpu"), work_dir=tmp_path))
    assert isinstance(result, StageResult)
    json.dumps(result.metrics, default=str)                 # metrics go into the manifest as they are
    assert state_hash(teacher.module) == teacher_state, "a stage must not change the teacher (the input model)"
    out = result.model
    c, h, w = out.spec.input_shape
    with torch.no_grad():
        logits = out.module.eval()(torch.zeros(2, c, h, w))
    assert tuple(logits.shape) == (2, digits.num_classes)
    if not result.changed_model:
        assert state_hash(out.module) == state_hash(tiny.module)


def _targets_listing(backend: str):
    return next(t for t in list_targets() if backend in t.backends)


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_backend_compiles_fp32_into_the_bundle_and_runs_like_pytorch(name, tiny, digits, tmp_path):
    backend_cls = BACKENDS.get(name)
    if not backend_cls.available():
        pytest.skip(f"{name}'s runtime is not installed here")
    assert "fp32" in backend_cls.precisions
    calibration = draw_calibration(digits.train, tiny.spec, 16, 0).inputs
    request = CompileRequest(out_dir=tmp_path, target=_targets_listing(name), calibration=calibration)
    artifact = backend_cls().compile(tiny, "fp32", request)
    assert artifact.backend == name and artifact.precision == "fp32"
    for rel in artifact.files:                       # every file lives inside the bundle and is recorded
        path = (tmp_path / rel).resolve()
        assert path.is_file() and path.is_relative_to(tmp_path.resolve())
    assert artifact.path in artifact.files and artifact.bytes > 0
    if not artifact.runnable_here:
        return   # built on the device (TensorRT): nothing to run here
    x = calibration[:8]
    with backend_cls().load(artifact, tmp_path, 1) as session:
        logits = session.predict(x)
    with torch.no_grad():
        expected = tiny.module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=1e-3)
