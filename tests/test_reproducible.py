"""Reproducible training (issue 39): the same seed, data, recipe and thread count give the same weights in two
fresh processes, whatever trained before in the process; another seed gives other weights (so the check can
fail)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

# A fresh interpreter each time: torch seeds its global generator from the OS at start-up, so what a process
# drew before training (a model's random init) is exactly what one process alone cannot show.
TRAIN = """
import hashlib, json, sys
import torch
from edgekit.data import load_data
from edgekit.training import TrainParams, evaluate_module, train
from edgekit.training.reproducible import seeded_model
data = load_data("digits")
runs = {}
for seed in map(int, sys.argv[1:]):
    loaded = seeded_model("builtin:tinycnn", data.num_classes, seed)
    report = train(loaded.module, loaded.spec, data, TrainParams(epochs=1, lr=0.1, batch_size=64, crop_pad=1,
                   hflip=False, seed=seed, threads=1), description="t")
    h = hashlib.sha256()
    for name, tensor in loaded.module.state_dict().items():
        h.update(name.encode()); h.update(tensor.contiguous().numpy().tobytes())
    runs[seed] = {"hash": h.hexdigest(), "top1": evaluate_module(loaded.module, loaded.spec, data.test)["top1"],
                  "threads": report.threads, "seed": report.seed, "after": torch.get_num_threads()}
print(json.dumps(runs))
"""


def test_same_seed_and_threads_train_the_same_weights_in_fresh_processes():
    # two processes at once (one thread each), the seeds in opposite orders: each seed's weights must not
    # depend on what the process trained before it
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, *seeds], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "EDGEKIT_QUIET": "1"})
             for seeds in (("0", "1"), ("1", "0"))]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    a, b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)
    assert a["0"]["hash"] == b["0"]["hash"] and a["0"]["top1"] == b["0"]["top1"]
    assert a["1"]["hash"] == b["1"]["hash"]
    assert a["0"]["hash"] != a["1"]["hash"]
    # the report records what the weights depend on; the process's own thread count is given back after
    assert a["0"]["threads"] == 1 and a["0"]["seed"] == 0 and a["0"]["after"] == b["0"]["after"] >= 1
