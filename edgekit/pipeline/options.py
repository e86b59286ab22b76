"""What one ``compress`` run is asked to do, as one typed record (the public ``edgekit.compress`` and the CLI
both build it), and the settings derived from it before any work: the effective latency budget and gates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from edgekit.errors import EdgekitError
from edgekit.gates import Gates
from edgekit.recipe import BudgetSettings, Recipe

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch.nn as nn
    from torch.utils.data import Dataset

    from edgekit.data import DataSplits
    from edgekit.profiling.remote import SshDevice
    from edgekit.spec import ModelSpec

# A model: a source string (builtin:, torchvision:, timm:, a file) or a module built in Python.
ModelInput = Union[str, "nn.Module", None]
# Data: a source string or path (digits, fashion-mnist, a folder), torch Datasets, or splits already built.
DataInput = Union[str, Path, "DataSplits", "Dataset", "Sequence[Dataset]", None]


@dataclass
class CompressOptions:
    """Everything a run reads besides the target's and recipe's files. Defaults are the CLI's."""

    model: ModelInput = None
    data: DataInput = None
    recipe: str | Path | Recipe | None = None   # a path, a shipped name or a Recipe; None: the target's own
    target: str = "x86-cpu"
    out: Path | None = None
    force: bool = False
    arch: str | None = None
    input_size: tuple[int, int] | None = None
    spec: ModelSpec | None = None  # a module's preprocessing and input (None: inferred from the module and data)
    trust_pickle: bool = False
    use_cache: bool = True
    resume: bool = True            # continue an interrupted training stage from its last epoch checkpoint
    threads: int | None = None
    overrides: dict = field(default_factory=dict)   # recipe compile overrides (library callers only)
    server_target: str = "x86-cpu"                  # where the tail of a split model runs
    gates: Gates = field(default_factory=Gates)      # CI gates (edgekit/gates.py); results go in the manifest
    device: str = "auto"                             # auto | cpu | cuda | cuda:N: training and evaluation
    skip_broken_images: bool = False                 # leave unreadable files out (listed in the manifest)
    latency_budget_ms: float | None = None           # the goal (recipe ``budget:``); overrides its latency_ms
    budget_students: list[str] = field(default_factory=list)  # more budget.students (student architectures searched)
    remote: SshDevice | None = None                  # time search candidates there, bench the bundle there
    command: list[str] | None = None                 # what the user called (manifest ``command``); None: sys.argv
    classes: str | Path | list[str] | None = None     # the model's output names: "imagenet", a file, or a list
    preprocess: str | Path | dict | None = None       # how files become the model's input (models/preprocess.py)
    calibration: str | Path | None = None             # a folder of unlabelled images to calibrate INT8 on


def effective_budget(recipe: Recipe, latency_budget_ms: float | None,
                     students: list[str] | None = None) -> BudgetSettings | None:
    """The recipe's ``budget:`` with ``--latency-budget-ms`` over its latency (or alone, with defaults), and
    ``--budget-student`` sources added to its students."""
    if latency_budget_ms is None:
        if recipe.budget is not None and recipe.budget.latency_ms is None:
            raise EdgekitError(f"recipe {recipe.name} has a budget: section without latency_ms",
                               "set budget.latency_ms or pass --latency-budget-ms")
        if students and recipe.budget is None:
            raise EdgekitError("--budget-student needs a latency budget to search under",
                               "add --latency-budget-ms B (or a budget: section to the recipe)")
        budget = recipe.budget
    elif latency_budget_ms <= 0:
        raise EdgekitError(f"--latency-budget-ms {latency_budget_ms:g} is not positive", "give the budget in ms, e.g. 5")
    else:
        base = recipe.budget or BudgetSettings(latency_ms=latency_budget_ms)
        budget = base.model_copy(update={"latency_ms": latency_budget_ms})
    if budget is not None and students:
        budget = budget.model_copy(update={"students": list(dict.fromkeys([*budget.students, *students]))})
    return budget


def budget_gates(gates: Gates, budget: BudgetSettings | None) -> Gates:
    """A budget is also a latency gate on the deployed artifact: the bundle is judged on it (exit 3 when missed)."""
    if budget is None:
        return gates
    limit = budget.latency_ms if gates.max_latency_ms is None else min(gates.max_latency_ms, budget.latency_ms)
    return Gates(gates.max_accuracy_drop, limit)
