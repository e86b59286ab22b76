"""ModelSpec: what every consumer of a model needs to feed it, so nobody guesses preprocessing.

The spec travels with the model through stages, compilers, runtimes and the bundle. ``prepare``
is the single place where raw images (uint8 or [0,1] float, any channel count, any size) become
the model's input tensor; data loaders, calibration and every runtime session go through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator


class ModelSpec(BaseModel):
    input_shape: tuple[int, int, int] = Field(description="C, H, W of one input image")
    channel_order: str = Field("RGB", description="RGB, BGR or L (grey)")
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    num_classes: int
    class_names: list[str] | None = None
    # Inputs are scaled to [0, 1] before mean/std (torchvision convention).
    # How an image file becomes the input, as the weights expect it: resize the short side to ``resize``
    # (PIL, antialiased, ``interpolation``), then centre-crop to the input size (H, W). None: squash the
    # whole image to the input size (edgekit's own small models and in-memory grey sets).
    resize: int | None = Field(None, description="short side before the centre crop (None: squash)")
    interpolation: str = Field("bilinear", description="PIL filter: nearest, bilinear, bicubic, lanczos, box, hamming")
    transform_from: str | None = Field(None, description="where resize/crop/mean/std came from, e.g. "
                                       "ResNet50_Weights.IMAGENET1K_V2 or timm resolve_data_config")

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(v) <= 0:
            raise ValueError(f"input shape must be positive, got {v}")
        return v

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def hw(self) -> tuple[int, int]:
        return self.input_shape[1], self.input_shape[2]

    def with_input_size(self, h: int, w: int) -> "ModelSpec":
        """The same model at another input size; a weights' short-side resize keeps its ratio to the crop
        (232/224 at 224 px becomes 166/160 at 160 px), as timm and torchvision scale their eval transforms."""
        update: dict = {"input_shape": (self.channels, h, w)}
        if self.resize is not None:
            update["resize"] = int(round(self.resize * min(h, w) / min(self.hw)))
        return self.model_copy(update=update)

    def transform(self) -> dict:
        """The file -> input recipe as plain JSON (what ``edgekit_runtime.preprocess`` reads on devices)."""
        return {"resize": self.resize, "crop": list(self.hw), "interpolation": self.interpolation,
                "mode": "L" if self.channels == 1 else "RGB", "channel_order": self.channel_order,
                "mean": list(self._per_channel(self.mean)), "std": list(self._per_channel(self.std))}

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Raw batch (N, C', H', W'), uint8 or float in [0, 1] -> normalised model input (N, C, H, W).

        Grey images fed to an RGB model are replicated to 3 channels; RGB fed to a grey model is
        converted with ITU-R 601 luma weights. Resizing is bilinear (antialiased when shrinking).
        """
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        c = x.shape[1]
        if c != self.channels:
            if c == 1:
                x = x.expand(-1, self.channels, -1, -1)
            elif self.channels == 1 and c == 3:
                w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
                x = (x * w).sum(1, keepdim=True)
            else:
                raise ValueError(f"cannot map {c}-channel images to a {self.channels}-channel model")
        if tuple(x.shape[-2:]) != self.hw:
            x = F.interpolate(x, size=self.hw, mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.hw[1])
        if self.channel_order == "BGR":
            x = x.flip(1)
        mean = torch.tensor(self._per_channel(self.mean), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self._per_channel(self.std), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def _per_channel(self, values: tuple[float, ...]) -> tuple[float, ...]:
        return values * self.channels if len(values) == 1 else values
