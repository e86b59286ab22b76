"""Recipes: which stages run, in which order, with which settings (declarative, torchdistill-style).

    name: quickstart
    stages:
      - finetune: {epochs: 3, lr: 0.05}
      - evaluate
    compile: {precisions: [fp32]}
    profile: {runs: 100}

Stage settings are validated against each stage's own ``Params`` model when the recipe loads, so a
typo fails before any training starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgekit.errors import EdgekitError
from edgekit.resources import shipped_dir
from edgekit.target import Target
from edgekit.vocab import Precision, PrecisionChoice


class StageEntry(BaseModel):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OnnxRuntimeOptions(_Strict):
    """What ``backends/onnx_quant.py`` reads (the TensorRT QDQ export uses its own fixed settings)."""

    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    reduce_range: bool | Literal["auto"] = Field("auto", description="7-bit weights; auto: on x86 without VNNI")
    activation_type: Literal["U8", "S8"] | None = Field(None, description="default: U8 on x86, S8 on Arm")

    @field_validator("reduce_range", mode="before")
    @classmethod
    def _reduce_range(cls, v: Any) -> Any:
        if v is True or v is False or v == "auto":
            return v
        raise ValueError(f"{v!r} is not one of: true, false, auto")

    @field_validator("activation_type", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class OpenVinoOptions(_Strict):
    preset: Literal["performance", "mixed"] = "performance"


class TensorRTOptions(_Strict):
    version: str | None = Field(None, description="TensorRT version on the device (calibration cache header)")


class TfliteOptions(_Strict):
    """The LiteRT backend reads no options yet; any key is a typo."""


class CompileOptions(_Strict):
    """``compile.options``, one section per backend, validated when the recipe loads so that a typo
    or an unknown value fails before any training (backends read them as a plain dict)."""

    onnxruntime: OnnxRuntimeOptions = OnnxRuntimeOptions()
    openvino: OpenVinoOptions = OpenVinoOptions()
    tensorrt: TensorRTOptions = TensorRTOptions()
    tflite: TfliteOptions = TfliteOptions()

    def for_backends(self) -> dict[str, dict[str, Any]]:
        return self.model_dump(mode="json")


class CompileSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Precisions to compile; "target" means the target's default precision, "auto" lets the
    # precision-selection logic measure candidates (quantization issue).
    precisions: list[Precision | PrecisionChoice] = Field(default_factory=lambda: [Precision.FP32])
    backends: list[str] | None = Field(None, description="override the target's backend list")
    max_accuracy_drop: float | None = Field(None, description="percentage points vs the PyTorch model")
    accuracy_control: bool = Field(True, description="with explicit INT8 precisions and max_accuracy_drop: NNCF's "
                                   "accuracy-aware quantization (reverts layers to float until within the bound). "
                                   "A latency-budget plan turns it off: the search timed files built without it, "
                                   "and a layer reverted to float can make the file miss the budget")
    options: CompileOptions = Field(default_factory=CompileOptions, description="per-backend options")
    min_agreement: float | None = Field(None, ge=0, le=100, description="precision: auto: the top-1 agreement (%) "
                                        "with the final PyTorch model on the validation images an INT8 file must "
                                        "reach besides max_accuracy_drop; a file missing either gets a 'mixed' "
                                        "sibling with the layers most sensitive to INT8 kept in float")
    max_float_layers: int = Field(8, ge=0, description="precision: auto: at most this many layers kept in float "
                                  "(tried 1, 2, 4, ... by measured sensitivity); 0 turns mixed precision off")
    calibration_size: int = Field(300, ge=1, description="INT8 calibration images (see calibration/README.md)")
    calibration_seed: int | None = Field(None, description="default: the recipe's seed")


class ProfileSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warmup: int = 10
    runs: int = 100
    max_seconds: float = 10.0
    batch: int = 1
    threads: int | None = Field(None, ge=1)
    eval_batch: int = 64
    score: Literal["all", "needed"] = Field("all", description="which artifacts are scored on the test split: "
                                            "all, or (with precision: auto on a local target) only those a "
                                            "decision can choose: per backend, the fastest within the accuracy "
                                            "bound and its measured near-ties. A file slower than that cannot "
                                            "be deployed, and scoring it costs a pass over the test split")


class RobustnessSettings(BaseModel):
    """Optional robustness evaluation (edgekit/profiling/robustness.py): top-1 under FGSM/PGD/CW and common corruptions
    for the input model, the final model and each artifact. Off unless the recipe has ``robustness:``."""

    model_config = ConfigDict(extra="forbid")
    eps: list[float] = Field(default_factory=lambda: [0.0, 2 / 255, 8 / 255],
                             description="L-inf budgets in [0, 1]-pixel units")
    attacks: list[Literal["fgsm", "pgd", "cw"]] = Field(default_factory=lambda: ["fgsm", "pgd"],
                                                        description="cw: Carlini-Wagner L2 (no eps; its mean L2 "
                                                        "distortion is reported)")
    pgd_steps: int = Field(10, ge=1)
    cw_steps: int = Field(30, ge=1, le=10000, description="CW: Adam steps per search round")
    cw_c: float = Field(1.0, gt=0, description="CW: the first weight c of the margin loss (then searched per image)")
    cw_search_steps: int = Field(3, ge=1, le=20, description="CW: binary-search rounds over c")
    cw_lr: float = Field(0.05, gt=0, le=1, description="CW: Adam step size in tanh space")
    corruptions: list[Literal["gaussian_noise", "blur", "brightness", "contrast", "jpeg"]] = Field(
        default_factory=lambda: ["gaussian_noise", "blur", "brightness", "contrast", "jpeg"])
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3])
    limit: int | None = Field(1000, ge=1, description="test images used (the first ones, in order)")
    batch: int = Field(100, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _ranges(self) -> "RobustnessSettings":
        if any(not 0 <= e <= 1 for e in self.eps):
            raise ValueError("robustness.eps values are in [0, 1]-pixel units (e.g. 0.0314 for 8/255)")
        if any(s not in (1, 2, 3) for s in self.severities):
            raise ValueError("robustness.severities are 1, 2 or 3")
        return self


DEFAULT_BUDGET_MACS = [1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08, 0.05]


class BudgetSettings(BaseModel):
    """A latency budget as the goal (``edgekit compress --latency-budget-ms``; edgekit/search/): the search
    prunes the input model to each level (untrained: latency does not depend on the weights), compiles it
    for the target's runtimes and precisions, times it (here, on the device over SSH, or estimated), and
    keeps the least-compressed candidate that fits; the recipe then prunes to it and trains once."""

    model_config = ConfigDict(extra="forbid")
    latency_ms: float | None = Field(None, gt=0, description="p50 at batch 1 of the deployed artifact on the "
                                     "target (--latency-budget-ms overrides it)")
    margin: float = Field(0.1, ge=0, lt=1, description="search against latency_ms x (1 - margin): timing noise")
    macs: list[float] = Field(default_factory=lambda: list(DEFAULT_BUDGET_MACS),
                              description="MACs fractions the search may prune to (1.0 = no pruning)")
    # 64: Intel AMX multiplies INT8/BF16 tiles 64 bytes deep, so on such a CPU a model pruned to multiples of 64
    # can run faster at several times the MACs of an unrounded one (benchmarks/budget_search.py). Elsewhere it
    # costs a timing or two and is chosen only where it keeps more MACs within the budget: the search measures.
    round_to: list[int | None] = Field(default_factory=lambda: [None, 8, 64],
                                       description="channel rounding tried at each level (null: none; the recipe's "
                                       "prune stage's own is added)")
    precisions: list[Precision] | None = Field(None, description="default: the target's precisions")
    backends: list[str] | None = Field(None, description="default: the target's backends")
    calibration_size: int = Field(32, ge=1, description="INT8 calibration images per candidate (timing only)")
    runs: int = Field(60, ge=5, description="timed runs per candidate")
    max_seconds: float = Field(3.0, gt=0, description="time cap per candidate")
    confirm: int = Field(2, ge=0, description="measured searches: re-time the chosen candidate this many more "
                         "times and judge it on its slowest p50; if it no longer fits, the next one is chosen")
    distill_epochs: int = Field(8, ge=1, description="KD epochs when the recipe has no distill stage")
    students: list[str] = Field(default_factory=list,
                                description="student architectures (model sources, e.g. 'timm:mobilenetv3_small_100') "
                                "the search also times, unpruned at the input model's resolution, as alternatives "
                                "to pruning it; a chosen student is trained once by KD from the input model")

    @model_validator(mode="after")
    def _levels(self) -> "BudgetSettings":
        if not self.macs or any(not 0 < m <= 1 for m in self.macs):
            raise ValueError("budget.macs are fractions in (0, 1]")
        if not self.round_to:
            raise ValueError("budget.round_to needs at least one entry (null: no rounding)")
        return self


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "recipe"
    description: str = ""
    seed: int = 0
    stages: list[StageEntry] = Field(default_factory=list)
    compile: CompileSettings = CompileSettings()
    profile: ProfileSettings = ProfileSettings()
    robustness: RobustnessSettings | None = None
    budget: BudgetSettings | None = None
    source_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _stage_shorthand(cls, data: Any) -> Any:
        """Accept ``- evaluate`` and ``- finetune: {epochs: 3}`` as stage entries."""
        if isinstance(data, dict) and isinstance(data.get("stages"), list):
            entries = []
            for item in data["stages"]:
                if isinstance(item, str):
                    entries.append({"name": item})
                elif isinstance(item, dict) and len(item) == 1 and "name" not in item:
                    (name, params), = item.items()
                    entries.append({"name": name, "params": params or {}})
                else:
                    entries.append(item)
            data = {**data, "stages": entries}
        return data

    def for_target(self, target: Target, widest: int | None = None) -> tuple["Recipe", str | None]:
        """The recipe with each prune stage's ``round_to: auto`` replaced by the target's channel multiple on
        this host for a model whose widest prunable layer has ``widest`` channels
        (``Target.channel_multiple_here``), and a line saying what was chosen and why (None when no stage
        asks). Bound before anything reads the settings, so that the stage cache key, the budget search and
        the manifest all hold the number the pruner used."""
        from edgekit.runtime.identity import host_cpu_flags

        stages, why = [], None
        for entry in self.stages:
            if entry.name == "prune" and entry.params.get("round_to") == "auto":
                multiple, reason = target.channel_multiple_here(host_cpu_flags(), widest)
                entry = entry.model_copy(update={"params": {**entry.params, "round_to": multiple}})
                why = f"prune round_to auto: {f'channels ×{multiple}' if multiple else 'no rounding'} ({reason})"
            stages.append(entry)
        return (self.model_copy(update={"stages": stages}), why) if why else (self, None)


def recipe_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(shipped_dir("recipes").glob("*.yaml"))}


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe YAML by path, or a shipped recipe by name (``quickstart``)."""
    path = Path(name_or_path)
    if not path.is_file():
        files = recipe_files()
        if str(name_or_path) not in files:
            raise EdgekitError(f"recipe '{name_or_path}' not found",
                               f"give a YAML path or one of: {', '.join(files)}")
        path = files[str(name_or_path)]
    try:
        data = yaml.safe_load(path.read_text()) or {}
        recipe = Recipe(**data, source_file=str(path))
    except (yaml.YAMLError, ValidationError, TypeError) as err:
        raise EdgekitError(f"recipe {path} is invalid: {_first_error(err)}") from None
    if not recipe.stages and "compile" not in data and recipe.budget is None:
        # Nothing to do but compile the input model at the defaults: a typo'd or truncated file, not a plan.
        raise EdgekitError(f"recipe {path} has no stages and no compile section",
                           "add stages (e.g. '- finetune: {epochs: 3}') or a compile: section; see the "
                           "shipped recipes (recipes/quickstart.yaml)")
    validate_stage_params(recipe)
    return recipe


def largest_batch(recipe: Recipe) -> int:
    """The largest ``batch_size`` any stage of ``recipe`` trains with (nested settings included), 1 without
    one: what memory must hold the activations of (``models.footprint``)."""
    from edgekit.stages import STAGES

    def batches(value: Any) -> list[int]:
        if isinstance(value, dict):
            own = [value["batch_size"]] if isinstance(value.get("batch_size"), int) else []
            return own + [b for v in value.values() for b in batches(v)]
        return []

    found = [b for entry in recipe.stages
             for b in batches(STAGES.get(entry.name).Params(**entry.params).model_dump())]
    return max(found, default=1)


def validate_stage_params(recipe: Recipe) -> None:
    from edgekit.stages import STAGES

    for entry in recipe.stages:
        stage_cls = STAGES.get(entry.name)
        try:
            stage_cls.Params(**entry.params)
        except ValidationError as err:
            raise EdgekitError(f"recipe stage '{entry.name}' has bad settings: {_first_error(err, stage_cls.Params)}") from None


def _first_error(err: Exception, model: type[BaseModel] = Recipe) -> str:
    if isinstance(err, ValidationError):
        e = err.errors()[0]
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, e["loc"][:-1])
            msg = f"unknown key (allowed: {', '.join(allowed) or 'none'})" if allowed is not None else msg
        return f"{loc}: {msg}"
    return str(err).splitlines()[0]


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the model at ``loc`` (for an unknown-key error), or None when it is not a model."""
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return list(model.model_fields)
