"""The benchmark suite's two data shapes: a scenario (a row of benchmarks/scenarios.yaml) and a result (one
file per scenario and host under benchmarks/results/). Every runner, the renderer and the index read these,
so a number is stored one way whichever benchmark produced it."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgekit.errors import EdgekitError, first_line

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios.yaml"
RESULTS = HERE / "results"

# A bar is named for the metric it reads: ``min_<metric>`` is met when the value is >= the threshold,
# ``max_<metric>`` when it is <=; any other name compares the metric with the threshold for equality (a flag
# such as ``same_predictions: true``).
_BAR_PREFIXES = ("min_", "max_")


class Scenario(BaseModel):
    """One benchmark: which runner (``kind``) measures it, with which parameters, and which bars it must meet.
    ``quick`` holds the parameter overrides of its smoke variant (``run --quick``); a scenario without one has
    no smoke variant."""
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    quick: dict[str, Any] | None = None
    bars: dict[str, float | bool] = Field(default_factory=dict)
    # Repeats: the runner is called once per seed (its ``seed`` parameter) and every numeric metric is stored per
    # seed and reported as the mean with its min-max; bars are judged on the mean, the worst run shown beside it.
    # Why: one run per accuracy number cannot tell a better tool from a luckier run (issue 39: the same command
    # trained teachers 3.2 points apart). ``--quick`` runs the first seed only, and says so.
    seeds: list[int] | None = Field(None, min_length=1)

    def seeds_for(self, quick: bool) -> list[int] | None:
        """The seeds a run repeats over (None: one run, the runner's own seed)."""
        return self.seeds[:1] if quick and self.seeds else self.seeds

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("the description is one line (run --list prints it)")
        return value.strip()

    def params_for(self, quick: bool) -> dict[str, Any]:
        """The parameters of the full run, or of the smoke variant."""
        if not quick:
            return dict(self.params)
        if self.quick is None:
            raise EdgekitError(f"scenario {self.name} has no quick variant",
                               "run it without --quick, or add a quick: section to benchmarks/scenarios.yaml")
        return {**self.params, **self.quick}


class ScenarioTable(BaseModel):
    """benchmarks/scenarios.yaml."""
    model_config = ConfigDict(extra="forbid")

    scenarios: list[Scenario]

    @field_validator("scenarios")
    @classmethod
    def _unique(cls, value: list[Scenario]) -> list[Scenario]:
        names = [s.name for s in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"scenario names repeated: {', '.join(duplicates)}")
        return value

    def get(self, name: str) -> Scenario:
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario
        raise EdgekitError(f"no scenario named {name!r}", "python -m benchmarks run --list shows them")


def load_scenarios(path: Path = SCENARIOS) -> ScenarioTable:
    """The scenario table, validated."""
    try:
        return ScenarioTable(**yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError, TypeError) as err:
        raise EdgekitError(f"{path} is not a valid scenario table: {first_line(err, 300)}",
                           "see the comment at its top") from None


class Bar(BaseModel):
    """A named threshold as judged on one result (on the mean over its seeds, where it repeats; ``worst`` is then
    the worst single run in the bar's direction)."""
    name: str
    value: Any = None
    threshold: float | bool
    met: bool
    worst: Any = None


class Spread(BaseModel):
    """One number over a result's seeds: the mean, its range and each run's value (seed order)."""
    mean: float
    min: float
    max: float
    runs: list[float]


def spread_of(values: list[Any]) -> Spread | None:
    """The spread of one metric's values over the runs; None when any run has no number for it (a flag, a
    name, a missing value: such a metric keeps its value when every run agrees)."""
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    floats = [float(v) for v in values]
    return Spread(mean=round(sum(floats) / len(floats), 4), min=min(floats), max=max(floats), runs=floats)


def combine_runs(runs: list[tuple[int, "Measured"]]) -> "Measured":
    """Several seeds' measurements as one: each numeric metric's mean (what bars read) with its spread, the
    other metrics where all runs agree (else the list of them); rows matched by position, numeric cells that
    differ between seeds become ``{mean, min, max}`` (tables of different lengths: every seed's rows, marked);
    every run's metrics and rows kept in ``per_seed``."""
    first = runs[0][1]
    if len(runs) == 1:
        return first.model_copy(update={"seeds": [runs[0][0]], "per_seed": [
            {"seed": runs[0][0], "metrics": first.metrics, "rows": first.rows}]})
    metrics: dict[str, Any] = {}
    spreads: dict[str, Spread] = {}
    names = list(dict.fromkeys(k for _, m in runs for k in m.metrics))
    for name in names:
        values = [m.metrics.get(name) for _, m in runs]
        spread = spread_of(values)
        if spread is not None:
            spreads[name], metrics[name] = spread, spread.mean
        else:
            metrics[name] = values[0] if all(v == values[0] for v in values) else values
    rows: list[dict[str, Any]] = []
    if not all(len(m.rows) == len(first.rows) for _, m in runs):   # tables that do not line up: each seed's own
        rows = [{"seed": s, **row} for s, m in runs for row in m.rows]
    else:
        for i, row in enumerate(first.rows):
            merged = {}
            for key in row:
                values = [m.rows[i].get(key) for _, m in runs]
                spread = spread_of(values)
                same = all(v == values[0] for v in values)
                present = [v for v in values if v is not None]
                partial = spread_of(present) if len(present) < len(values) else None
                merged[key] = (values[0] if same else spread.model_dump(exclude={"runs"}) if spread else
                               {**partial.model_dump(exclude={"runs"}), "of_runs": f"{len(present)} of {len(values)}"}
                               if partial else values)
            rows.append(merged)
    notes = list(dict.fromkeys(n for _, m in runs for n in m.notes))
    details = {**first.details, "per_seed_details": {str(s): m.details for s, m in runs}}
    return Measured(rows=rows, metrics=metrics, details=details, seeds=[s for s, _ in runs], notes=notes,
                    spread=spreads, per_seed=[{"seed": s, "metrics": m.metrics, "rows": m.rows} for s, m in runs])


def judge(bars: dict[str, float | bool], metrics: dict[str, Any],
          spread: dict[str, "Spread"] | None = None) -> list[Bar]:
    """Each bar of a scenario against the metrics a run measured (the mean, over seeds); a metric the run did not
    produce fails. ``worst``: the worst run's value in the bar's direction, where the metric has a spread."""
    out = []
    for name, threshold in bars.items():
        prefix = next((p for p in _BAR_PREFIXES if name.startswith(p)), "")
        s = (spread or {}).get(name[len(prefix):])
        worst = None if s is None else (s.min if prefix == "min_" else s.max if prefix == "max_" else None)
        value = metrics.get(name[len(prefix):])
        if value is None or (prefix and not isinstance(value, (int, float))):   # missing, or runs that disagree
            met = False
        elif prefix == "min_":
            met = value >= threshold
        elif prefix == "max_":
            met = value <= threshold
        else:
            met = value == threshold
        out.append(Bar(name=name, value=value, threshold=threshold, met=bool(met), worst=worst))
    return out


class Host(BaseModel):
    """The machine a result comes from: the CPU model name and its generation where /proc/cpuinfo gives it
    (an "AMD EPYC" may be a Zen 3 or a Zen 5), and the cores."""
    cpu: str
    cores: int | None = None
    family_model: str | None = None
    features: str | None = None

    @property
    def slug(self) -> str:
        """The result's file name: ``amd-epyc-f26m2-2c``."""
        name = re.sub(r"\((r|tm)\)", "", self.cpu.lower())
        name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "unknown-cpu"
        if self.family_model:
            numbers = re.findall(r"\d+", self.family_model)
            if len(numbers) == 2:
                name += f"-f{numbers[0]}m{numbers[1]}"
        return name + (f"-{self.cores}c" if self.cores else "")

    def describe(self) -> str:
        return self.cpu + (f" ({self.family_model})" if self.family_model else "") + (
            f", {self.cores} cores" if self.cores else "")

    @classmethod
    def from_identity(cls, identity: dict) -> "Host":
        """From edgekit's host identity (``host_identity()``, a manifest's ``host``)."""
        cores = identity.get("cores")
        return cls(cpu=identity.get("cpu") or "unknown", cores=int(cores) if cores else None,
                   family_model=identity.get("cpu_family_model"), features=identity.get("cpu_features"))

    @classmethod
    def here(cls) -> "Host":
        from edgekit.profiling.latency import host_identity

        return cls.from_identity(host_identity())


class Measured(BaseModel):
    """What a runner function returns: the table, the named values its bars read, and anything else worth
    keeping (JSON only: traces, fits, per-round samples)."""
    rows: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    spread: dict[str, Spread] = Field(default_factory=dict)       # numeric metrics over seeds (combine_runs)
    per_seed: list[dict[str, Any]] = Field(default_factory=list)   # each seed's own metrics and rows


class Result(BaseModel):
    """One stored result: benchmarks/results/<scenario>/<host slug>[-quick].json."""
    schema_version: int = 1
    scenario: str
    description: str
    kind: str
    quick: bool = False
    host: Host
    date: str
    commit: str | None = None
    command: str
    params: dict[str, Any] = Field(default_factory=dict)
    rows: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    bars: list[Bar] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    spread: dict[str, Spread] = Field(default_factory=dict)
    per_seed: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def stem(self) -> str:
        return self.host.slug + ("-quick" if self.quick else "")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def result_path(results: Path, scenario: str, stem: str) -> Path:
    return results / scenario / f"{stem}.json"


def save_result(result: Result, results: Path = RESULTS) -> Path:
    """Writes the JSON and its markdown next to it (each through a temporary name, so a reader never sees half
    a file); returns the JSON's path."""
    from benchmarks.render import render_result

    path = result_path(results, result.scenario, result.stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, text in ((path, json.dumps(result.model_dump(mode="json"), indent=1, default=str) + "\n"),
                         (path.with_suffix(".md"), render_result(result))):
        tmp = target.with_name(target.name + ".tmp-write")
        tmp.write_text(text)
        tmp.replace(target)
    return path


def load_result(path: Path) -> Result:
    try:
        return Result(**json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError, TypeError) as err:
        raise EdgekitError(f"{path} is not a result of the suite: {first_line(err, 200)}",
                           "results/ holds only <scenario>/<host>.json files that python -m benchmarks wrote") from None


def stored_results(results: Path = RESULTS) -> list[Result]:
    """Every result file under ``results``, newest first."""
    found = [load_result(p) for p in sorted(results.glob("*/*.json"))]
    return sorted(found, key=lambda r: r.date, reverse=True)
