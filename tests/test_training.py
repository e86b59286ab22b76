"""Early stopping: ``patience`` ends a run whose validation accuracy stopped rising, and ``min_epochs`` holds it
until then (a dip at a still-high learning rate is not a plateau: issue 39's teacher stopped at epoch 4)."""

from __future__ import annotations

import pytest
from torch import nn

from edgekit.data import load_data
from edgekit.models import load_model
from edgekit.training import TrainParams, train


@pytest.mark.parametrize("min_epochs, stops_after", [(0, 2), (4, 4), (6, 6)])
def test_patience_stops_a_flat_run_but_not_before_min_epochs(min_epochs, stops_after):
    data = load_data("digits")
    spec = load_model("builtin:tinycnn", num_classes=data.num_classes).spec
    # a linear classifier without BatchNorm at a learning rate that cannot move it: every validation after the
    # first equals the first, so each one counts against patience
    model = nn.Sequential(nn.Flatten(), nn.Linear(spec.input_shape[0] * spec.hw[0] * spec.hw[1], data.num_classes))
    report = train(model, spec, data, TrainParams(epochs=6, lr=1e-12, batch_size=64, max_steps_per_epoch=2,
                                                  patience=1, min_epochs=min_epochs, hflip=False))
    assert report.epochs_run == stops_after
    assert report.stopped_early == (stops_after < 6)   # a run that reached its last epoch was not stopped early
    assert report.kept_epoch == 1   # the best (first) epoch is kept either way
