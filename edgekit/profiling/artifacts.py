"""Scoring an artifact through its own runtime: logits on held-out data and agreement with the
PyTorch model it came from (compilation profiles with these; latency is ``edgekit.runtime.measure``)."""

from __future__ import annotations


import numpy as np
from torch.utils.data import Dataset

from edgekit.data.core import prepared_batches
from edgekit.runtime import PREDICT_BATCH, Session
from edgekit.spec import ModelSpec


def session_logits(session: Session, spec: ModelSpec, ds: Dataset, batch_size: int = PREDICT_BATCH,
                   limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    outs, labels = [], []
    for x, y in prepared_batches(ds, spec, batch_size, limit):
        outs.append(session.predict(x.numpy(), batch_size))   # within the file's batch (Session.max_batch)
        labels.append(y.numpy())
    return np.concatenate(outs), np.concatenate(labels)


def agreement(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Top-1 agreement (%) and max |logit difference| against the PyTorch reference."""
    return {"top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean() * 100),
            "max_abs_logit_diff": float(np.abs(logits - reference).max())}
