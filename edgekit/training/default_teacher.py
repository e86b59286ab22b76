"""The embedded default teacher: ``builtin:tinycnn`` trained on scikit-learn's digits on first use
(about ten seconds on two CPU cores), cached in the user cache dir, so the quickstart runs offline."""

from __future__ import annotations

from pathlib import Path

from edgekit import ui
from edgekit.data import load_data
from edgekit.models.checkpoint import save_checkpoint
from edgekit.resources import cache_dir
from edgekit.training import TrainParams, evaluate_module, train
from edgekit.training.reproducible import seeded_model

DEFAULT_MODEL = "builtin:tinycnn"
DEFAULT_DATA = "digits"
# bump when the recipe below changes, so stale caches are not reused. v2: the random init is seeded (v1's was
# whatever torch's start-up seed gave, so two machines' caches held different teachers)
_VERSION = "v2"


def default_teacher_path() -> Path:
    path = cache_dir("models") / f"digits-tinycnn-{_VERSION}.pt"
    if not path.exists():
        ui.info("training the default teacher (builtin:tinycnn on digits) once; it is cached at " + str(path))
        data = load_data(DEFAULT_DATA)
        loaded = seeded_model(DEFAULT_MODEL, data.num_classes, seed=0)
        train(loaded.module, loaded.spec, data, TrainParams(epochs=12, lr=0.1, batch_size=64, crop_pad=1,
                                                            hflip=False, seed=0), description="default teacher")
        top1 = evaluate_module(loaded.module, loaded.spec, data.test)["top1"]
        loaded.notes = {"weights": f"trained by edgekit on digits, test top-1 {top1:.2f}%"}
        loaded.source = f"default teacher ({DEFAULT_MODEL} trained on {DEFAULT_DATA})"
        save_checkpoint(loaded, path)
    return path
