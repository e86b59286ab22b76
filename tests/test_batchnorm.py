"""BatchNorm statistics re-estimated before validation for slow-momentum models (MobileNetV3's 0.01):
without it a briefly trained model reads near chance in eval mode though it has learned (README, vs_peers)."""

import torch

from edgekit.data import load_data
from edgekit.models import load_model
from edgekit.training.batchnorm import needs_recalibration
from edgekit.training.evaluate import evaluate_module
from edgekit.training.loop import TrainParams, train


def _trained(recalibrate_bn: bool | None) -> tuple[float, float]:
    torch.manual_seed(0)
    loaded = load_model("builtin:mobilenetv3s_32", num_classes=10)
    data = load_data("digits", image_size=loaded.spec.hw)
    report = train(loaded.module, loaded.spec, data, TrainParams(epochs=2, lr=0.1, batch_size=64,
                                                                recalibrate_bn=recalibrate_bn))
    return report.best_val_top1, evaluate_module(loaded.module, loaded.spec, data.test)["top1"]


def test_a_briefly_trained_mobilenet_is_judged_on_statistics_of_its_own_weights():
    assert needs_recalibration(load_model("builtin:mobilenetv3s_32", num_classes=10).module)
    assert not needs_recalibration(load_model("builtin:resnet8", num_classes=10).module)
    stale_val, stale_test = _trained(recalibrate_bn=False)
    val, test = _trained(recalibrate_bn=None)   # auto: on for momentum 0.01
    assert test >= stale_test + 20, (stale_test, test)
    assert val >= stale_val + 20, (stale_val, val)
