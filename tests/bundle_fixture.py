"""A small real bundle for bench/report tests: the default digits teacher, evaluate only, compiled
for x86-cpu (OpenVINO + ONNX Runtime), short profiling. Built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


RECIPE = """name: bench-test
stages:
  - evaluate: {split: test}
compile:
  precisions: [fp32]
profile: {warmup: 3, runs: 20, max_seconds: 1}
"""


def build_bundle(root: Path, *extra: str, recipe_text: str = RECIPE) -> Path:
    from conftest import run_cli

    recipe = root / "recipe.yaml"
    recipe.write_text(recipe_text)
    out = root / "bundle"
    result = run_cli("compress", "--recipe", str(recipe), "--out", str(out), "--force", *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("small-bundle"))
