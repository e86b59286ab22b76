"""Files and values written by someone else, or by a careless user: each case from issue #36 as it was
found, rerun so that it cannot come back. A payload here would create a file; the file must never appear."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.models import load_model
from tests.conftest import run_cli


class _Payload:
    """Unpickling this runs ``touch <marker>``: proof that a file ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker), protocol=2)


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory) -> Path:
    """A plain torch.export.save archive with a dynamic batch dimension (symbolic shapes in its graph)."""
    path = tmp_path_factory.mktemp("pt2") / "good.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(_tiny(), (torch.zeros(2, 3, 16, 16),), dynamic_shapes=({0: batch},)), path)
    return path


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy the archive ``src`` to ``dst`` with ``edit(name, bytes) -> bytes | None`` applied to each member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def _json_edit(suffix: str, change):
    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith(suffix):
            return data
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()
    return edit


def _pickled_weight(marker: Path):
    """The issue's case: ``use_pickle`` in the weights config, an os.system pickle as the weight."""
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("weights_config.json"):
            doc = json.loads(data)
            next(iter(doc["config"].values()))["use_pickle"] = True
            return json.dumps(doc).encode()
        if name.endswith("weights/weight_0"):
            return _evil_pickle(marker)
        return data
    return edit


def _guards_code(marker: Path):
    return _json_edit("models/model.json", lambda d: d.__setitem__(
        "guards_code", [f"__import__('os').system('touch {marker}')"]))


def _sympy_expr(marker: Path):
    def change(doc):
        text = json.dumps(doc).replace("Symbol(", f"(__import__('os').system('touch {marker}') or Symbol)(", 1)
        doc.clear()
        doc.update(json.loads(text))
    return _json_edit("models/model.json", change)


def _sample_inputs(marker: Path):
    def edit(name: str, data: bytes) -> bytes:
        if "sample_inputs/" in name:
            buf = io.BytesIO()
            torch.save(_Payload(marker), buf)
            return buf.getvalue()
        return data
    return edit


def _os_target(marker: Path):
    """Defence in depth: torch's verifier happens to reject this target today; the vetting does not rely on it."""
    def change(doc):
        doc["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    return _json_edit("models/model.json", change)


def _legacy_layout(good: Path, evil: Path, marker: Path) -> Path:
    """The pre-2.7 layout torch falls back to: top-level "version" and pickled ``serialized_*.pt`` files."""
    from torch._export.serde.schema import SCHEMA_VERSION

    with zipfile.ZipFile(good) as z:
        program = z.read(next(n for n in z.namelist() if n.endswith("models/model.json")))
    buf = io.BytesIO()
    torch.save(_Payload(marker), buf)
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("version", ".".join(map(str, SCHEMA_VERSION)))
        z.writestr("serialized_exported_program.json", program)
        for name in ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt"):
            z.writestr(name, buf.getvalue())
    return evil


@pytest.mark.parametrize("attack", [_pickled_weight, _guards_code, _sympy_expr, _os_target, _sample_inputs,
                                    _legacy_layout])
def test_pt2_payload_never_runs(good_pt2, tmp_path, attack):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt2"
    if attack is _legacy_layout:
        _legacy_layout(good_pt2, evil, marker)
    else:
        _rewrite(good_pt2, evil, attack(marker))
    with pytest.raises(EdgekitError, match="--trust-pickle|not in the current"):
        load_model(str(evil))
    # Renamed, it is still recognised as an export archive and still refused.
    renamed = evil.rename(tmp_path / "evil.pt")
    with pytest.raises(EdgekitError):
        load_model(str(renamed))
    assert not marker.exists()


def test_plain_pt2_still_loads_without_trust(good_pt2):
    loaded = load_model(str(good_pt2), input_size=(16, 16))
    assert loaded.spec.num_classes == 2


def test_pt2_payload_through_the_cli(good_pt2, tmp_path):
    """``edgekit inspect`` and ``edgekit compress -m`` as in the issue: exit 2, one line, no payload."""
    marker = tmp_path / "pwned"
    evil = _rewrite(good_pt2, tmp_path / "evil.pt2", _pickled_weight(marker))
    for args in (["inspect", str(evil)],
                 ["compress", "-m", str(evil), "--data", "digits", "--out", str(tmp_path / "b")]):
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert "--trust-pickle" in result.stderr and "Traceback" not in result.stderr
        assert not marker.exists()


def test_pickle_payload_in_pt_file_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pth"
    raw.write_bytes(_evil_pickle(marker))
    zipped = tmp_path / "zipped.pt"
    torch.save({"model": _Payload(marker)}, zipped)
    for path in (raw, zipped):
        with pytest.raises(EdgekitError):
            load_model(str(path))
    assert not marker.exists()


def test_torchscript_payload_never_runs(tmp_path):
    """TorchScript's own unpickler knows no Python globals: a swapped-in os.system pickle fails to load."""
    marker = tmp_path / "pwned"
    good = tmp_path / "good.pt"
    torch.jit.save(torch.jit.script(_tiny()), good)
    evil = _rewrite(good, tmp_path / "evil.pt", lambda name, data: _evil_pickle(marker)
                    if name.endswith("/data.pkl") else data)
    with pytest.raises(EdgekitError):
        load_model(str(evil))
    assert not marker.exists()


def test_checkpoint_payload_never_runs(tmp_path):
    """An edgekit checkpoint is read with weights_only: a payload in it is refused, not run."""
    from edgekit.models import save_checkpoint

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "model.pt"
    save_checkpoint(load_model("builtin:tinycnn"), ckpt)
    payload = torch.load(ckpt, weights_only=True)
    payload["notes"] = _Payload(marker)
    torch.save(payload, ckpt)
    with pytest.raises(EdgekitError):
        load_model(str(ckpt))
    assert not marker.exists()


# --- bundles from someone else: verified before any file is run or uploaded -------------------------

def _copy_bundle(small_bundle: Path, tmp_path: Path) -> Path:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle, symlinks=True)
    return bundle


def _edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _bench_error(bundle: Path, remote=None) -> str:
    from edgekit.profiling.bench import BenchSettings, bench_bundle

    with pytest.raises(EdgekitError) as info:
        bench_bundle(bundle, BenchSettings(runs=2, max_seconds=1, limit=8), remote=remote, update_bundle=False)
    return str(info.value)


def _onnx(manifest: dict) -> dict:
    return next(a for a in manifest["artifacts"] if a["path"].endswith("model.onnx"))


def test_bench_refuses_a_symlinked_artifact_here_and_over_ssh(small_bundle, tmp_path, sshd):
    from edgekit.profiling.remote import SshDevice

    secret = tmp_path / "host-secret.txt"
    secret.write_text("the host's private data\n")
    bundle = _copy_bundle(small_bundle, tmp_path)
    onnx = bundle / _onnx(json.loads((bundle / "manifest.json").read_text()))["path"]
    onnx.unlink()
    onnx.symlink_to(secret)
    assert "symbolic link" in _bench_error(bundle)
    remote = SshDevice.parse(f"{sshd.user}@127.0.0.1", port=sshd.port, identity=sshd.user_key,
                             known_hosts=sshd.known_hosts)
    assert "symbolic link" in _bench_error(bundle, remote)
    uploaded = [p for p in sshd.device_tmp.rglob("*") if p.is_file()]
    assert not any(p.read_bytes() == secret.read_bytes() for p in uploaded)


@pytest.mark.parametrize("path, needle", [("/etc/passwd", "leaves the bundle"),
                                          ("../../etc/passwd", "leaves the bundle"),
                                          ("artifacts/model.pt", "sha256")])
def test_bench_refuses_a_manifest_naming_another_file(small_bundle, tmp_path, path, needle):
    bundle = _copy_bundle(small_bundle, tmp_path)

    def point_elsewhere(manifest):
        art = _onnx(manifest)
        old = art["path"]
        art["path"], art["files"] = path, [path]
        art["sha256"] = {path: art["sha256"][old]}
    _edit_manifest(bundle, point_elsewhere)
    text = _bench_error(bundle)
    assert needle in text and "onnxruntime" in text


def test_bench_refuses_a_changed_artifact(small_bundle, tmp_path):
    bundle = _copy_bundle(small_bundle, tmp_path)
    onnx = bundle / _onnx(json.loads((bundle / "manifest.json").read_text()))["path"]
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    assert "does not match its sha256" in _bench_error(bundle)


def test_bench_exits_non_zero_naming_failed_artifacts(small_bundle, tmp_path):
    """An artifact whose file is consistent with the manifest but does not run: exit 2, named."""
    import hashlib

    bundle = _copy_bundle(small_bundle, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    art = _onnx(manifest)
    (bundle / art["path"]).write_bytes(b"not an onnx model")
    _edit_manifest(bundle, lambda m: _onnx(m)["sha256"].__setitem__(
        art["path"], hashlib.sha256(b"not an onnx model").hexdigest()))
    result = run_cli("bench", str(bundle), "--artifact", art["name"], "--runs", "2", "--max-seconds", "1",
                     "--limit", "8")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "1 of 1 artifacts failed" in result.stderr and art["name"] in result.stderr


# --- never lose a user's data ------------------------------------------------------------------------

def _one_line(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_second_run_on_the_same_out_fails_at_once(tmp_path):
    """The lock is held by this process (as a first run would); a real second run is refused at once."""
    from edgekit.bundle import check_out_dir, release_out_dir

    out = tmp_path / "bundle"
    check_out_dir(out, force=False)
    try:
        result = run_cli("compress", "--model", "builtin:tinycnn", "--data", "digits", "--out", str(out), timeout=120)
        _one_line(result, "being written by another edgekit run", str(out))
        assert not out.exists()
    finally:
        release_out_dir(out)
    assert [p.name for p in tmp_path.iterdir()] == [], "lock file left behind"


def test_force_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("print('the user's work')\n")
    result = run_cli("compress", "--model", "builtin:tinycnn", "--data", "digits", "--out", str(src), "--force",
                     timeout=120)
    _one_line(result, "not an edgekit bundle", "--force")
    assert (src / "main.py").read_text() == "print('the user's work')\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("where", ["afile/sub", "/proc/edgekit-x"])
def test_unwritable_out_fails_before_any_work(tmp_path, where):
    (tmp_path / "afile").write_text("")
    out = tmp_path / where if not where.startswith("/") else Path(where)
    result = run_cli("compress", "--model", "builtin:tinycnn", "--data", "digits", "--out", str(out), timeout=120)
    _one_line(result, "cannot be written")
    assert "stage" not in result.stdout + result.stderr


def test_cache_entry_lock_serialises_two_writers(tmp_path):
    """Two processes on one stage cache entry: the second waits until the first lets go."""
    import subprocess
    import sys
    import time

    from edgekit.locks import FileLock

    lock_path = tmp_path / ".lock"
    lock = FileLock(lock_path)
    assert lock.acquire(wait=False)
    code = ("import sys, time; from pathlib import Path; from edgekit.locks import held\n"
            f"with held(Path({str(lock_path)!r})): print(time.time())")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    time.sleep(1.5)
    assert child.poll() is None, "the second writer did not wait"
    released = time.time()
    lock.release()
    got = float(child.communicate(timeout=60)[0])
    assert got >= released
    assert not lock_path.exists()


# --- Ctrl-C -------------------------------------------------------------------------------------------

def test_ctrl_c_during_training_exits_130(tmp_path):
    """SIGINT to a real ``python -m edgekit compress`` in its training stage: exit 130, "error: interrupted",
    no bundle, no temp folder, no lock file."""
    import signal
    import subprocess
    import sys
    import time

    recipe = tmp_path / "long.yaml"
    recipe.write_text("name: long\nstages:\n  - finetune: {epochs: 200, lr: 0.01, hflip: false}\n")
    out = tmp_path / "bundle"
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "EDGEKIT_CACHE": str(cache),
           "EDGEKIT_QUIET": "1"}
    # SIGINT as a terminal delivers it: a suite started in the background (``pytest &``, ``nohup``) ignores
    # SIGINT, the child would inherit that, and Python installs no KeyboardInterrupt handler then
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "compress", "-m", "builtin:tinycnn", "-d", "digits",
                             "-r", str(recipe), "-o", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not list(cache.glob("work/*/.lock")):   # the stage is training
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "error: interrupted" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "long.yaml"]


# --- 16-bit and float images keep their information --------------------------------------------------

def test_16_bit_and_float_values_scale_instead_of_clipping(tmp_path):
    """The issue's evidence: 300, 1000, 30000 and 65535 all became one white tensor; now they stay ordered."""
    import numpy as np
    from PIL import Image

    from edgekit.runtime.preprocess import open_image

    seen = []
    for value in (300, 1000, 30000, 65535):
        path = tmp_path / f"{value}.png"
        Image.fromarray(np.full((4, 4), value, dtype=np.uint16)).save(path)
        assert Image.open(path).mode.startswith("I")
        seen.append(int(np.asarray(open_image(path, "L"))[0, 0]))
    assert seen == sorted(seen) and len(set(seen)) == 4 and seen[-1] == 255
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(tmp_path / "half.tiff")
    assert int(np.asarray(open_image(tmp_path / "half.tiff", "L"))[0, 0]) == 128


def _sixteen_bit_folder(root: Path, per_class: int = 40, mixed: bool = False) -> Path:
    """Two classes whose low bytes come from one distribution: they differ only above 8 bits."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, high in (("dim", (8, 40)), ("bright", (200, 240))):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(*high, (8, 8)) * 256 + rng.integers(0, 256, (8, 8))
            Image.fromarray(pixels.astype(np.uint16)).save(root / label / f"{i}.png")
    if mixed:
        Image.fromarray(rng.integers(0, 256, (8, 8)).astype(np.uint8), "L").save(root / "dim" / "eight.png")
    return root


def test_a_16_bit_folder_trains(tmp_path):
    data = _sixteen_bit_folder(tmp_path / "imgs")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: deep\nstages:\n  - finetune: {epochs: 4, lr: 0.05, hflip: false}\n"
                      "  - evaluate: {split: test}\ncompile: {precisions: [fp32]}\n"
                      "profile: {warmup: 1, runs: 5, max_seconds: 1}\n")
    result = run_cli("compress", "-m", "builtin:tinycnn", "-d", str(data), "-r", str(recipe), "-t", "x86-cpu",
                     "-o", str(tmp_path / "b"), "--json", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["references"]["final"]["accuracy"]["top1"] > 90
    assert manifest["data"]["source_modes"] == "I;16 (80 files)"


def test_mixed_bit_depths_warn(tmp_path, capsys):
    from edgekit.data.imagefolder import load_imagefolder

    splits = load_imagefolder(str(_sixteen_bit_folder(tmp_path / "imgs", per_class=5, mixed=True)), {}, (8, 8))
    assert "I;16 (10 files)" in splits.notes["source_modes"] and "L (1 files)" in splits.notes["source_modes"]
    assert "mixes bit depths" in " ".join(capsys.readouterr().err.split())


# --- bad values: refused before any work, one line naming the field ----------------------------------

def _quick(tmp_path: Path, *args: str, timeout: int = 120):
    """``edgekit compress`` on the digits demo model with ``args``; the --out folder must never appear."""
    out = tmp_path / "never"
    result = run_cli("compress", "-m", "builtin:tinycnn", "-d", "digits", "-o", str(out), *args, timeout=timeout)
    assert not out.exists()
    return result


@pytest.mark.parametrize("text", ["", "name: nothing\n", "name: nothing\nstages: []\n"])
def test_an_empty_recipe_is_refused(tmp_path, text):
    """The issue's case ran zero stages and deployed a chance-level model with exit 0."""
    recipe = tmp_path / "empty.yaml"
    recipe.write_text(text)
    _one_line(_quick(tmp_path, "-r", str(recipe)), str(recipe), "no stages and no compile section")


def test_a_compile_only_recipe_is_still_a_plan(tmp_path):
    from edgekit.recipe import load_recipe

    recipe = tmp_path / "ptq.yaml"
    recipe.write_text("name: ptq\ncompile: {precisions: [int8]}\n")
    assert load_recipe(recipe).compile.precisions == ["int8"]


def _one_class_folder(root: Path) -> Path:
    import numpy as np
    from PIL import Image

    (root / "cats").mkdir(parents=True)
    for i in range(10):
        Image.fromarray(np.full((8, 8), 20 * i, dtype=np.uint8)).save(root / "cats" / f"{i}.png")
    return root


def test_a_one_class_folder_is_refused(tmp_path):
    """The issue's case reported 100% top-1: a test split of one class is always right."""
    folder = _one_class_folder(tmp_path / "imgs")
    _one_line(_quick(tmp_path, "-d", str(folder)), "holds 1 class", "at least two")
    flat = _one_class_folder(tmp_path / "split")
    (flat / "train").mkdir()
    (flat / "cats").rename(flat / "train" / "cats")
    _one_line(_quick(tmp_path, "-d", str(flat)), "holds 1 class")


def test_a_one_class_dataset_is_refused():
    from torch.utils.data import TensorDataset

    from edgekit.data import from_datasets

    with pytest.raises(EdgekitError, match="holds 1 class"):
        from_datasets(TensorDataset(torch.rand(20, 1, 8, 8), torch.zeros(20, dtype=torch.long)))


@pytest.mark.parametrize("command", [["compress", "-m", "builtin:tinycnn", "-d", "digits"], ["bench", "."],
                                     ["serve-tail", "."]])
def test_threads_below_one_is_a_usage_error(command):
    """``--threads 0`` silently meant 2."""
    result = run_cli(*command, "--threads", "0", timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "--threads" in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr


def test_threads_below_one_in_a_recipe_or_target_names_the_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ncompile: {precisions: [fp32]}\nprofile: {threads: 0}\n")
    _one_line(_quick(tmp_path, "-r", str(recipe)), "profile.threads")
    target = tmp_path / "t.yaml"
    target.write_text("name: t\nruntime: onnxruntime\nbackends: [onnxruntime]\nprecisions: [fp32]\nthreads: 0\n")
    _one_line(_quick(tmp_path, "-t", str(target)), "threads: Input should be greater than or equal to 1")


def test_a_target_names_every_missing_and_invalid_field(tmp_path):
    """It said "2 validation errors for Target" and named none of them."""
    target = tmp_path / "t.yaml"
    target.write_text("name: t\nruntime: onnxruntime\nprecisions: [fp32, int4]\n")
    _one_line(_quick(tmp_path, "-t", str(target)), str(target), "missing field: backends", "precisions.1")
    target.write_text("name: t\n")
    _one_line(_quick(tmp_path, "-t", str(target)), "missing fields: runtime, backends, precisions")
    target.write_text("- just a list\n")
    _one_line(_quick(tmp_path, "-t", str(target)), "holds no fields")


def test_an_input_size_too_large_for_memory_is_refused_before_allocating(tmp_path):
    """The issue's case allocated 13 GB and died after 105 s; the estimate comes from a forward pass on the meta
    device, so the refusal takes no more than starting the command (the real batch-1 forward alone takes minutes
    on a small CPU: the timeout would fire)."""
    result = _quick(tmp_path, "--input-size", "4096", timeout=90)
    _one_line(result, "1x4096x4096", "13.0 GB per image", "available", "--input-size")
    assert "stage" not in result.stdout + result.stderr


def test_activation_estimate_matches_what_a_forward_allocates():
    """The estimate is what a training step keeps: the bytes of every tensor the forward creates (a real
    forward's outputs, counted independently by their storages' sizes)."""
    from edgekit.models.footprint import footprint

    model = load_model("builtin:resnet8")
    kept = []
    hooks = [m.register_forward_hook(lambda m, i, o: kept.append(o.untyped_storage().nbytes()))
             for m in model.module.modules() if not list(m.children()) and not getattr(m, "inplace", False)]
    model.module.eval()(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    found = footprint(model.module, (1, 28, 28))
    # leaf modules miss the functional residual adds (one block output per residual block): within 25%
    assert sum(kept) <= found.activation_bytes <= 1.25 * sum(kept)
    assert found.total_stride == 4 and found.output_shape == (1, 10)


def test_an_input_size_below_the_models_stride_is_refused(tmp_path):
    """``--input-size 1x1`` was a traceback in the augmentation (reflect padding wider than the image)."""
    _one_line(_quick(tmp_path, "--input-size", "1x1"), "--input-size 1x1", "at least 2x2")
    with pytest.raises(EdgekitError, match="at least 4x4"):
        load_model("builtin:resnet8", input_size=(3, 3))
    assert load_model("builtin:resnet8", input_size=(4, 4)).spec.input_shape == (1, 4, 4)


def test_augmentation_pads_a_tiny_image_by_less():
    from edgekit.training.augment import random_crop_flip

    for size in (1, 2, 3):
        x = torch.rand(4, 1, size, size)
        assert random_crop_flip(x, pad=2).shape == x.shape


def test_no_deploy_says_why_for_each_candidate(tmp_path):
    """A target reached over SSH without device figures: no latency, so nothing to deploy, and each candidate
    says so (the issue's run ended with "no artifact was chosen for deploy" and no reason)."""
    target = tmp_path / "bare.yaml"
    target.write_text("name: bare\nruntime: onnxruntime\nbackends: [onnxruntime]\nprecisions: [fp32]\nreach: ssh\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ncompile: {precisions: [fp32]}\nprofile: {warmup: 1, runs: 3, max_seconds: 1}\n")
    out = tmp_path / "b"
    result = run_cli("compress", "-m", "builtin:tinycnn", "-d", "digits", "-t", str(target), "-r", str(recipe),
                     "-o", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())
    assert "no artifact was chosen for deploy:" in text
    assert "- onnxruntime-fp32: no latency: target bare" in text and "device.peak_gops" in text
    assert "edgekit bench BUNDLE --host" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest.get("deploy") is None and manifest["no_deploy"][0].startswith("onnxruntime-fp32: no latency")
