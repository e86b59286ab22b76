"""``edgekit split-run``: the device half. Runs the head through its runtime session, quantizes the
bottleneck to uint8, sends it to ``serve-tail`` over one keep-alive HTTP connection, and times
every image: head (preprocess + head + quantize), transfer (round trip minus server time), tail
(server-reported), end to end. Optionally interleaves the full-offload baseline (raw image or JPEG
sent to the server, which runs the whole model) so both are measured in the same run.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.profiling.latency import latency_stats
from edgekit.split.bundle import load_split_bundle
from edgekit.split.deploy import quantize
from edgekit.training.evaluate import accuracy_counts


class TailClient:
    """One persistent HTTP/1.1 connection to the tail server."""

    def __init__(self, server: str, token: str, timeout: float = 30.0):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise EdgekitError(f"--server {server!r} is not HOST:PORT", "e.g. --server 127.0.0.1:8765")
        self.host, self.port, self.timeout = host.strip("[]"), int(port), timeout
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[np.ndarray, float]:
        """Returns (logits, server milliseconds)."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/octet-stream", **headers}
        for attempt in (0, 1):
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as err:
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt:
                    raise EdgekitError(f"cannot reach the tail server at {self.host}:{self.port}: {err}",
                                       "start it with: edgekit serve-tail BUNDLE --port N") from None
        if response.status != 200:
            raise EdgekitError(f"tail server refused the request ({response.status}): {data[:200].decode(errors='replace')}",
                               "check the token and that client and server use the same bundle")
        shape = tuple(int(v) for v in response.getheader("X-Shape", "0").split(","))
        return np.frombuffer(data, dtype="<f4").reshape(shape), float(response.getheader("X-Server-Ms", "nan"))

    def close(self) -> None:
        self.conn.close()


def run_split(bundle_dir: Path, server: str, token: str, data_source: str, limit: int | None = 200,
              offload: str = "none", head_backend: str | None = None, threads: int = 1, warmup: int = 5) -> dict:
    """Per-image split inference over the network (batch 1), with optional interleaved offload."""
    import torch

    from edgekit.data import load_data_for
    from edgekit.split.transfer import encode_jpeg

    bundle = load_split_bundle(bundle_dir)
    spec = bundle.spec
    data = load_data_for(data_source, spec)
    ds = data.test
    n = len(ds) if limit is None else min(limit, len(ds))
    head_artifact = bundle.head_artifact(head_backend)
    head = bundle.session(head_artifact, threads)
    client = TailClient(server, token)
    modes = ["split"] + ([offload] if offload != "none" else [])
    times = {m: {"device_ms": [], "transfer_ms": [], "server_ms": [], "e2e_ms": []} for m in modes}
    logits = {m: [] for m in modes}
    sent = {m: 0 for m in modes}
    labels = []
    try:
        for i in range(-min(warmup, n), n):
            image, label = ds[max(i, 0)]
            batch = image[None]
            for mode in modes:
                if mode == "split":
                    t0 = time.perf_counter()
                    x = spec.prepare(batch).numpy()
                    q = quantize(head.run(x), bundle.scale, bundle.zero_point)
                    body, path, headers = q.tobytes(), "/v1/tail", {"X-Shape": ",".join(map(str, q.shape))}
                elif mode == "raw":
                    t0 = time.perf_counter()
                    array = np.ascontiguousarray(batch.numpy())
                    body, path, headers = array.tobytes(), "/v1/full", {"X-Format": "raw",
                                                                          "X-Shape": ",".join(map(str, array.shape))}
                else:  # jpeg
                    t0 = time.perf_counter()
                    body, path, headers = encode_jpeg(image), "/v1/full", {"X-Format": "jpeg"}
                t1 = time.perf_counter()
                out, server_ms = client.post(path, body, headers)
                t2 = time.perf_counter()
                if i < 0:
                    continue
                t = times[mode]
                t["device_ms"].append((t1 - t0) * 1e3)
                t["server_ms"].append(server_ms)
                t["transfer_ms"].append((t2 - t1) * 1e3 - server_ms)
                t["e2e_ms"].append((t2 - t0) * 1e3)
                logits[mode].append(out)
                sent[mode] += len(body)
            if i >= 0:
                labels.append(label)
    finally:
        client.close()
        head.close()
    labels_a = np.asarray(labels)
    result = {"bundle": str(bundle_dir), "server": server, "data": data_source, "images": len(labels),
              "head_artifact": head_artifact.name, "bottleneck_shape": list(bundle.bottleneck_shape),
              "quantization": bundle.quantization, "threads": threads, "modes": {}}
    names = {"split": ("head", "tail"), "raw": ("device", "server"), "jpeg": ("jpeg_encode", "server")}
    for mode in modes:
        acc = accuracy_counts(np.concatenate(logits[mode]), labels_a)
        device_name, server_name = names[mode]
        t = times[mode]
        result["modes"][mode if mode == "split" else f"offload_{mode}"] = {
            "accuracy": {**acc, "samples": len(labels)},
            "bytes_per_image": sent[mode] / max(1, len(labels)),
            f"{device_name}_ms": latency_stats(t["device_ms"]), "transfer_ms": latency_stats(t["transfer_ms"]),
            f"{server_name}_ms": latency_stats(t["server_ms"]), "e2e_ms": latency_stats(t["e2e_ms"])}
    _ = torch  # spec.prepare works on torch tensors
    return result
