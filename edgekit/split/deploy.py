"""What a SplitModel adds to the normal compile path (``edgekit/compilation.py``):

- its two parts as models to compile: the head (encoder, image -> float bottleneck) for the device
  target, under ``artifacts/head/``, and the tail (decoder + teacher's remaining layers, dequantized
  bottleneck -> logits) for the server target, under ``artifacts/tail/``;
- the tail's inputs (calibration, validation, test): the PyTorch head's outputs of the same images
  after the 8-bit transfer round trip, so the tail is calibrated and scored on what it will receive;
- ``PairSession``: head -> uint8 -> tail through the runtimes, which is how a head artifact's
  accuracy is measured (a head alone has no accuracy), with the tail the server will run;
- the manifest's ``split`` section.

The 8-bit transfer (quantize on the device, dequantize on the server) is done in NumPy with the
scale/zero point stored in the manifest, exactly as ``TransferQuant`` does it in PyTorch, so the
pair's accuracy through the runtimes can be checked against the PyTorch split model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from edgekit.data.core import prepared_batches
from edgekit.models.loaded import LoadedModel
from edgekit.runtime.base import Session
from edgekit.spec import ModelSpec
from edgekit.split.model import SplitModel

TAIL_BACKEND = "onnxruntime"   # the server runs the tail with ONNX Runtime


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float bottleneck -> uint8 (round half to even, like torch.round)."""
    return np.clip(np.round(x / np.float32(scale)) + zero_point, 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def transfer(x: np.ndarray, quant: dict) -> np.ndarray:
    """What the server receives: the bottleneck after uint8 quantization and dequantization."""
    return dequantize(quantize(x, quant["scale"], quant["zero_point"]), quant["scale"], quant["zero_point"])


def tail_spec(model: SplitModel, spec: ModelSpec) -> ModelSpec:
    """The tail's input is the bottleneck; mean/std are identity, so ``prepare`` of a float bottleneck
    of the right shape returns it unchanged."""
    return ModelSpec(input_shape=model.cfg.bottleneck_shape, num_classes=spec.num_classes,
                     class_names=spec.class_names)


def split_parts(final: LoadedModel) -> tuple[LoadedModel, LoadedModel]:
    """(head, tail) as models the backends compile; the head keeps the model's input spec."""
    model: SplitModel = final.module
    head = LoadedModel(model.head_module().eval(), final.spec, source=final.source, arch=None)
    tail = LoadedModel(model.tail_module().eval(), tail_spec(model, final.spec), source=final.source, arch=None)
    return head, tail


class TailInputs:
    """Model-ready images -> the tail's inputs (PyTorch head, then the uint8 transfer round trip)."""

    def __init__(self, final: LoadedModel):
        self.model: SplitModel = final.module
        self.quant = self.model.quant.settings()

    def __call__(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        head = self.model.head_module().eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                outs.append(head(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size]))).numpy())
        return transfer(np.concatenate(outs).astype(np.float32), self.quant)

    def dataset(self, ds: Dataset, spec: ModelSpec, batch_size: int = 256) -> "BottleneckDataset":
        """A held-out split as the tail sees it (float bottlenecks + labels)."""
        xs, ys = [], []
        for x, y in prepared_batches(ds, spec, batch_size):
            xs.append(self(x.numpy()))
            ys.append(y.numpy())
        return BottleneckDataset(np.concatenate(xs), np.concatenate(ys))


class BottleneckDataset(Dataset):
    """Float bottlenecks with labels; through ``tail_spec.prepare`` they pass unchanged."""

    def __init__(self, inputs: np.ndarray, labels: np.ndarray):
        self.inputs, self.labels = torch.from_numpy(inputs), np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.inputs[i], int(self.labels[i])


class PairSession(Session):
    """head -> uint8 -> tail as one session over model-ready images (for accuracy; latency is timed
    on the head session alone). It takes the batches both parts take."""

    def __init__(self, head, tail, quant: dict):
        self.head, self.tail, self.quant = head, tail, quant
        self.info = {"head": getattr(head, "info", {}), "tail": getattr(tail, "info", {})}
        limits = [b for b in (head.max_batch, tail.max_batch) if b]
        self.max_batch = min(limits) if limits else None

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self.tail.run(transfer(self.head.run(inputs), self.quant))

    def close(self) -> None:
        pass   # the parts' sessions are owned by whoever opened them


def split_section(final: LoadedModel, heads: list, tails: list, serving_tail, server_target: str,
                  stage_metrics: dict[str, Any]) -> dict:
    """The manifest's ``split`` section (field names in edgekit/manifest.py ``SplitSection``)."""
    model: SplitModel = final.module
    quant = model.quant.settings()
    pair_top1 = next((a.metrics.get("accuracy", {}).get("top1") for a in heads
                      if a.runnable_here and a.metrics.get("accuracy")), None)
    return {
        "split_at": model.cfg.split_at,
        "bottleneck": {"shape": list(model.cfg.bottleneck_shape),
                       "bytes_per_image": int(np.prod(model.cfg.bottleneck_shape)), "quantization": quant},
        "feature_shape": list(model.cfg.feature_shape),
        "head": {"artifacts": [a.name for a in heads], "input": "model input (spec preprocessing)",
                 "output": "float32 bottleneck, quantized to uint8 for transfer"},
        "tail": {"artifact": serving_tail.name if serving_tail is not None else None,
                 "artifacts": [a.name for a in tails], "server_target": server_target,
                 "input": "dequantized float32 bottleneck", "output": "logits"},
        "spec": final.spec.model_dump(mode="json"),
        "stage": stage_metrics,
        "accuracy": {"split_pair_top1": pair_top1, "val_top1_teacher": stage_metrics.get("val_top1_teacher"),
                     "val_top1_split": stage_metrics.get("val_top1_split")},
    }
