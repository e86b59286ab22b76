"""How far an INT8 tensor is from its FP32 reference: SQNR and cosine, accumulated batch by batch so that a
224-px network's every layer can be compared without holding all its activations.

SQNR (signal-to-quantization-noise ratio) is ``10 log10(sum ref^2 / sum (int8 - ref)^2)`` in dB: +6 dB per
bit, so a well-calibrated 8-bit tensor sits around 30-40 dB and 0 dB means the error is as large as the signal.
The headline ``sqnr_db`` is taken per channel and the median over channels is reported. Why not over the whole
tensor: per-tensor activation scales fail exactly when one channel's range dwarfs the others (an outlier
channel), and then the whole-tensor ratio is dominated by that channel, which survives, while every other
channel is rounded to zero; the median channel sees the collapse. The whole-tensor SQNR and the cosine (which
the outlier dominates the same way) are kept alongside.
"""

from __future__ import annotations

import math

import numpy as np

# Channels whose FP32 energy is below this fraction of the strongest channel's are not scored (dead ReLU
# channels: any noise there is an infinite ratio that says nothing about the layer).
_DEAD = 1e-12


class TensorError:
    """Running sums for one tensor pair; ``channel_axis`` is 1 for NCHW / N x C tensors, -1 for NHWC."""

    def __init__(self, channel_axis: int = 1):
        self.axis = channel_axis
        self.signal: np.ndarray | None = None     # per-channel sum ref^2
        self.noise: np.ndarray | None = None      # per-channel sum (q - ref)^2
        self.dot = self.q2 = 0.0
        self.shape: tuple[int, ...] = ()

    def add(self, ref: np.ndarray, q: np.ndarray) -> None:
        ref = np.asarray(ref, dtype=np.float64)
        q = np.asarray(q, dtype=np.float64).reshape(ref.shape)
        self.shape = tuple(ref.shape[1:])
        if ref.ndim >= 2:
            axis = self.axis % ref.ndim
            reduce = tuple(i for i in range(ref.ndim) if i != axis)
        else:
            reduce = None
        signal = np.atleast_1d((ref * ref).sum(axis=reduce))
        noise = np.atleast_1d(((q - ref) ** 2).sum(axis=reduce))
        self.signal = signal if self.signal is None else self.signal + signal
        self.noise = noise if self.noise is None else self.noise + noise
        self.dot += float((ref * q).sum())
        self.q2 += float((q * q).sum())

    def sqnr_db(self) -> float:
        """Median over the live channels of the per-channel SQNR (dB); capped at 99 dB (identical tensors)."""
        if self.signal is None:
            return math.nan
        live = self.signal > _DEAD * max(float(self.signal.max()), 1e-30)
        if not live.any():
            return math.nan
        return float(np.median([_db(s, n) for s, n in zip(self.signal[live], self.noise[live])]))

    def tensor_sqnr_db(self) -> float:
        if self.signal is None:
            return math.nan
        return _db(float(self.signal.sum()), float(self.noise.sum()))

    def cosine(self) -> float:
        if self.signal is None:
            return math.nan
        r2 = float(self.signal.sum())
        if r2 == 0.0 or self.q2 == 0.0:
            return 1.0 if r2 == self.q2 else 0.0
        return self.dot / math.sqrt(r2 * self.q2)


def _db(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return 99.0
    if signal <= 0.0:
        return -99.0
    return float(min(99.0, max(-99.0, 10.0 * math.log10(signal / noise))))
