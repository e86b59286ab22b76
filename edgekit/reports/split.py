"""The split section of report.md: what crosses the network and what the pair costs and scores."""

from __future__ import annotations

from edgekit.manifest import Manifest


def split_markdown(manifest: Manifest) -> list[str]:
    split = manifest.split
    if not split:
        return []
    s, q = split.stage, split.bottleneck.quantization
    lines = ["## Split (head on the device, tail on the server)", "",
             f"- split after `{split.split_at}`: feature map {split.feature_shape} -> bottleneck "
             f"{split.bottleneck.shape} uint8 = **{split.bottleneck.bytes_per_image} B/image**"]
    if s:
        lines += [f"- input: raw {s['input_bytes_raw']:.0f} B, JPEG-95 {s['input_bytes_jpeg95']:.0f} B "
                  f"(bottleneck = {100 * s['bottleneck_ratio_raw']:.1f}% of raw, "
                  f"{100 * s['bottleneck_ratio_jpeg95']:.1f}% of JPEG)",
                  f"- head: {s['head_params']:,} params, {s['head_macs'] / 1e6:.3f} MMACs "
                  f"(teacher {s['teacher_params']:,} params, {s['teacher_macs'] / 1e6:.3f} MMACs; "
                  f"tail {s['tail_macs'] / 1e6:.3f} MMACs)",
                  f"- top-1 (test, PyTorch): split {s['test_top1_split']:.2f}% vs teacher {s['test_top1_teacher']:.2f}%"]
    if split.accuracy.split_pair_top1 is not None:
        lines.append(f"- top-1 through the runtimes (head -> uint8 -> tail): {split.accuracy.split_pair_top1:.2f}%")
    lines += [f"- transfer quantization: 8-bit affine per tensor, scale {q['scale']:.6g}, zero point {q['zero_point']}",
              f"- tail runs on `{split.tail.server_target}` ({split.tail.artifact}); serve it with "
              "`edgekit serve-tail`, run the pair with `edgekit split-run`", ""]
    return lines
