"""Profiling an artifact through its own runtime: accuracy on held-out data, agreement with the
PyTorch model it came from, and latency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from edgekit.backends.base import BACKENDS, Artifact
from edgekit.data.core import prepared_batches
from edgekit.recipe import ProfileSettings
from edgekit.runtime import Session, accuracy_counts, measure_latency
from edgekit.spec import ModelSpec


def session_logits(session: Session, spec: ModelSpec, ds: Dataset, batch_size: int = 64,
                   limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    outs, labels = [], []
    for x, y in prepared_batches(ds, spec, batch_size, limit):
        outs.append(session.run(x.numpy()))
        labels.append(y.numpy())
    return np.concatenate(outs), np.concatenate(labels)


def agreement(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Top-1 agreement (%) and max |logit difference| against the PyTorch reference."""
    return {"top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean() * 100),
            "max_abs_logit_diff": float(np.abs(logits - reference).max())}


def profile_artifact(artifact: Artifact, bundle_root: Path, spec: ModelSpec, ds: Dataset,
                     settings: ProfileSettings, threads: int, reference_logits: np.ndarray | None) -> dict:
    """Accuracy + latency of one artifact, measured through its runtime session."""
    backend = BACKENDS.get(artifact.backend)()
    session = backend.load(artifact, bundle_root, threads)
    try:
        logits, labels = session_logits(session, spec, ds, settings.eval_batch)
        metrics: dict = {"accuracy": {**accuracy_counts(logits, labels), "samples": int(len(labels))}}
        if reference_logits is not None:
            metrics["agreement"] = agreement(logits, reference_logits)
        sample = next(prepared_batches(ds, spec, settings.batch))[0].numpy()
        metrics["latency"] = {**measure_latency(session.run, sample, settings.warmup, settings.runs,
                                                settings.max_seconds), "threads": threads, "measured": "host"}
        metrics["session"] = session.info
    finally:
        session.close()
    return metrics
