"""``edgekit compress``: the whole path in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from edgekit import ui
from edgekit.cli import app
from edgekit.cli.common import (HOST, IDENTITY, KNOWN_HOSTS, PORT, REMOTE_PYTHON, parse_size, print_fitted,
                                print_json, print_table, stdout, table)
from edgekit.gates import gate_failure
from edgekit.reports.reasons import explain_deploy, explain_skipped
from edgekit.reports.tables import (ARTIFACT_COLUMNS, COMPACT_COLUMNS, GATE_COLUMNS, artifact_rows, compact_artifacts,
                                    fmt, gate_rows, headline, reference_title, skipped_label)


@app.command("compress")
def compress_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="builtin:<name> | torchvision:<arch> | "
                                        "timm:<name> | file (.pt/.pth/.pt2/TorchScript). Omit with --data for the demo."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="digits | fashion-mnist[:/path] | an image folder "
                                       "(class subfolders, or train/ and val/). Options after '?', e.g. ./imgs?val=0.2"),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="recipe YAML path or shipped recipe name "
                                         "[default: the target's recipe, see `edgekit targets`]"),
    target: str = typer.Option("x86-cpu", "--target", "-t", help="device target (see `edgekit targets`)"),
    server_target: str = typer.Option("x86-cpu", help="where the tail of a split model (bottleneck stage) runs"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="bundle directory [default: edgekit-runs/<run>]"),
    force: bool = typer.Option(False, "--force", help="replace --out if it exists and is not empty"),
    arch: Optional[str] = typer.Option(None, help="architecture of a state-dict model file, e.g. torchvision:resnet18"),
    input_size: Optional[str] = typer.Option(None, help="model input size HxW (default: the model's own)"),
    trust_pickle: bool = typer.Option(False, help="allow a pickled nn.Module file (it can run arbitrary code)"),
    classes: Optional[str] = typer.Option(
        None, "--classes", help="the model's output class names: 'imagenet' (ImageNet-1k, synset ids and names) or "
        "a text file with one name per line, in output order. Data class folders among them (synset ids or names, "
        "any case, '_' = ' ') are mapped onto the model's outputs instead of replacing its head"),
    preprocess: Optional[str] = typer.Option(
        None, "--preprocess", help="how image files become the model's input, e.g. "
        "'resize=256,crop=224,interpolation=bilinear,mean=127,std=128', or a YAML file with those keys "
        "(also channel_order=RGB|BGR, units=unit|pixel). resize: short side before the centre crop. mean/std: "
        "one value or one per channel; values above 1 are 0..255 pixel units (mean=127,std=128 means "
        "(px-127)/128), else [0, 1] units (mean=0.485,0.456,0.406). Overrides the model's own spec"),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="a folder of unlabelled images (any layout, searched recursively) to calibrate "
        "INT8 on, decoded like the model's input [default: the train split; without one, the evaluation images, "
        "with a warning]"),
    threads: Optional[int] = typer.Option(None, min=1, help="threads for profiling [default: all cores]"),
    no_cache: bool = typer.Option(False, "--no-cache", help="rerun every stage instead of reusing cached outputs"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue an interrupted training stage from "
                                "its last epoch checkpoint (same model, recipe and data) [default: resume]"),
    device: str = typer.Option("auto", "--device", help="where training and evaluation run: auto (CUDA when "
                               "available) | cpu | cuda | cuda:N; under torchrun each rank uses its LOCAL_RANK GPU"),
    skip_broken_images: bool = typer.Option(False, "--skip-broken-images", help="leave unreadable image files "
                                            "out (counted and listed in the manifest) instead of stopping"),
    json_out: bool = typer.Option(False, "--json", help="print the manifest as JSON on stdout"),
    wide: bool = typer.Option(False, "--wide", help="every column of the artifacts table (it no longer fits 80)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show other libraries' messages here instead of "
                                 "in the bundle's logs/third_party.log"),
    max_accuracy_drop: Optional[float] = typer.Option(
        None, "--max-accuracy-drop", help="CI gate: max top-1 drop (points) of an artifact vs the input model "
        "(PyTorch, test split). Only checks: what is built is the recipe's (compile.max_accuracy_drop). "
        "Exit code 3 when no artifact meets the gates; the bundle is written anyway"),
    latency_budget_ms: Optional[float] = typer.Option(
        None, "--latency-budget-ms", help="the goal: p50 (batch 1) of the deployed artifact on the target. edgekit "
        "prunes untrained copies of the model to several levels, times them through the target's runtimes and "
        "precisions (here for a local target, on the device with --host, else estimated and labelled), trains the "
        "least-compressed one that fits once (KD) and re-checks it (exit 3 when missed). Recipe: budget:"),
    budget_students: Optional[list[str]] = typer.Option(
        None, "--budget-student", help="with --latency-budget-ms: also time this architecture (a model source, "
        "e.g. timm:mobilenetv3_small_100, unpruned, at the model's resolution) as an alternative to pruning; if it "
        "keeps the most MACs within the budget, the model is distilled into it. Repeat for several. "
        "Recipe: budget.students"),
    host: Optional[str] = HOST,
    port: int = PORT,
    identity: Optional[Path] = IDENTITY,
    known_hosts: Optional[Path] = KNOWN_HOSTS,
    remote_python: str = REMOTE_PYTHON,
    max_latency_ms: Optional[float] = typer.Option(
        None, "--max-latency-ms", help="CI gate: max p50 latency at batch 1 (measured here for local targets, "
        "estimated for remote devices). Exit code 3 when it fails; the bundle is written anyway"),
) -> None:
    """Run a recipe's stages on a model, compile for the target, measure every artifact, write a bundle.

    Examples:

      edgekit compress                                  # offline demo: digits teacher, x86-cpu

      edgekit compress -m builtin:resnet8 -d fashion-mnist -r recipes/fashion-mnist.yaml -o runs/fm

      edgekit compress -m torchvision:resnet50 -d ./my-images -t jetson-orin-nano

      edgekit compress -m torchvision:resnet18 -d ./my-images -t x86-cpu --latency-budget-ms 2

      edgekit compress -m torchvision:mobilenet_v2 -d ./my-images -t rpi5 --latency-budget-ms 20 --host pi@pi5.local

      edgekit compress -m torchvision:resnet50 -d ./my-images -t x86-cpu --latency-budget-ms 5 --budget-student torchvision:mobilenet_v3_large

      edgekit compress -m lite0.pt2 --classes imagenet --preprocess resize=256,crop=224,mean=127,std=128 -d ./photos --calibration ./unlabelled -r int8
    """
    import sys

    import edgekit
    from edgekit.recipe import load_recipe
    from edgekit.target import load_target

    # Usage errors in the target, recipe or --preprocess (an unknown compile.options key...) fail here, in seconds,
    # before the pipeline imports the runtimes.
    load_recipe(recipe or load_target(target).recipe)
    if preprocess is not None:
        from edgekit.models.preprocess import parse_preprocess

        parse_preprocess(preprocess)
    with ui.third_party_to_file(verbose) as chatter:
        result = edgekit.compress(
            model, data, target=target, recipe=recipe, out=out, force=force, arch=arch,
            input_size=parse_size(input_size), trust_pickle=trust_pickle, use_cache=not no_cache, resume=resume,
            threads=threads, device=device, skip_broken_images=skip_broken_images,
            latency_budget_ms=latency_budget_ms, budget_students=budget_students or [],
            max_accuracy_drop=max_accuracy_drop, max_latency_ms=max_latency_ms, server_target=server_target,
            host=host, port=port, identity=identity, known_hosts=known_hosts, remote_python=remote_python,
            classes=classes, preprocess=preprocess, calibration=calibration, command=sys.argv)
        kept = chatter.keep(result.bundle) if result is not None else None
    if result is None:
        return  # a non-zero rank under torchrun: rank 0 reports
    manifest = result.manifest
    if kept is not None:
        ui.info(f"[dim]messages from other libraries: {escape(str(kept))} (-v shows them here)[/dim]")
    failure = gate_failure(manifest)
    if json_out:
        print_json(manifest.as_json())
        if failure:
            raise failure
        return
    print_result(manifest, wide)
    if failure:
        raise failure


def print_result(manifest, wide: bool = False, console: Console = stdout) -> None:
    """What ``edgekit compress`` prints on stdout for a bundle: artifacts, deploy choice, headline, gates."""
    print_artifacts(manifest, wide, console)
    for s in manifest.skipped:
        console.print(f"not produced: {skipped_label(s)}: {explain_skipped(s)}", style="dim", markup=False,
                      highlight=False)
    if manifest.deploy:
        d = manifest.deploy
        console.print(f"deploy: [bold]{escape(d.artifact)}[/bold] — top-1 {fmt(d.top1)}%, {escape(explain_deploy(d))}")
    for line in headline(manifest):
        console.print(line, markup=False, highlight=False)
    console.print(f"bundle: [bold]{escape(str(manifest.bundle))}[/bold] ({manifest.seconds or 0:.0f} s)")
    if manifest.gates:
        print_fitted("CI gates", GATE_COLUMNS, gate_rows(manifest), ["Δ final pt", "Δ input pt"], console)


def print_artifacts(manifest, wide: bool = False, console: Console = stdout) -> None:
    """The artifacts table: compact by default (fits 80 columns; what does not compete is one line under
    it), every column with ``wide``."""
    if wide:
        print_table(table(reference_title(manifest), ARTIFACT_COLUMNS, artifact_rows(manifest)), console)
        return
    compact = compact_artifacts(manifest)
    styles = ["bold" if i == compact.deployed else None for i in range(len(compact.rows))]
    print_table(table(reference_title(manifest), COMPACT_COLUMNS, compact.rows, styles), console)
    console.print(f"{compact.legend} · --wide: all columns", style="dim", markup=False, highlight=False)
    if compact.left_out:
        console.print(f"not ranked: {'; '.join(compact.left_out)}", style="dim", markup=False, highlight=False)
