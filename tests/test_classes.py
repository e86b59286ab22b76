"""Class names and preprocessing as data (issue 38, input side), on a tiny exported model: ``--classes``
maps a data folder's classes onto the model's outputs by synset id or name (no head replaced), a class order
that differs is remapped and said, ``--preprocess`` is parsed, validated and becomes the spec, a flat folder
of the model's classes is all evaluation when nothing trains, and ``--calibration`` feeds INT8 calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from edgekit.errors import EdgekitError
from edgekit.models.classes import imagenet_vocabulary, resolve, vocabulary
from edgekit.models.preprocess import apply_preprocess, parse_preprocess
from edgekit.pipeline import CompressOptions
from edgekit.pipeline.phases import _resolve
from edgekit.spec import ModelSpec
from tests.conftest import run_cli

NAMES = ["Tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]


class Tiny(nn.Module):
    """5 outputs whose logit k is large for images of brightness level k (so labels can be checked)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, len(NAMES))

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.fixture(scope="module")
def tiny_pt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(Tiny().eval(), (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},)),
                      path)
    return path


def _folder(root, classes, per_class=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_imagenet_vocabulary_answers_to_synsets_lemmas_and_any_case():
    vocab = imagenet_vocabulary()
    assert len(vocab) == 1000 and vocab.names[0] == "tench"
    assert vocab.lookup("n01440764") == [0] and vocab.lookup("Tinca_tinca") == [0]
    assert vocab.lookup("GREAT_WHITE_SHARK") == [2] and vocab.lookup("no such thing") == []
    assert len(vocab.lookup("crane")) == 2   # ImageNet has a bird and a machine called crane
    # torchvision's own category names are recognised as ImageNet-1k's, so synset folders map onto them too
    from torchvision.models import ResNet18_Weights

    torchvision_names = vocabulary(ResNet18_Weights.DEFAULT.meta["categories"])
    assert torchvision_names.kind == "imagenet" and torchvision_names.lookup("n01443537") == [1]
    assert vocabulary(["cat", "dog"]).kind == "names"


def test_resolve_maps_subsets_reorders_assumes_and_refuses_ambiguity():
    imagenet = imagenet_vocabulary().names
    mapped = resolve(imagenet, 1000, ["n01443537", "tench"])   # goldfish by synset, tench by name
    assert mapped.kind == "mapped" and mapped.data_to_model == [1, 0]
    assert resolve(["a", "b", "c"], 3, ["A", "b", "c"]).kind == "identity"
    reordered = resolve(["a", "b", "c"], 3, ["c", "a", "b"])
    assert reordered.kind == "reordered" and reordered.data_to_model == [2, 0, 1] and "another order" in reordered.note
    assert resolve(None, 3, ["x", "y", "z"]).kind == "assumed"        # no names: today's behaviour, recorded
    assert resolve(["a", "b"], 2, ["a", "zebra"]).kind == "assumed"
    assert resolve(["a", "b", "c"], 3, ["a", "zebra"]).kind == "differ"
    with pytest.raises(EdgekitError, match="crane.*matches 2"):
        resolve(imagenet, 1000, ["crane", "tench"])


def test_preprocess_string_yaml_and_dict_agree_and_units_are_pixels_above_1(tmp_path):
    text = parse_preprocess("resize=256,crop=224,interpolation=bilinear,mean=127,std=128")
    (tmp_path / "pre.yaml").write_text("resize: 256\ncrop: 224\ninterpolation: bilinear\nmean: 127\nstd: 128\n")
    assert parse_preprocess(str(tmp_path / "pre.yaml")) == text
    assert parse_preprocess({"resize": 256, "crop": 224, "mean": 127, "std": 128, "interpolation": "bilinear"}) == text
    spec = apply_preprocess(ModelSpec(input_shape=(3, 32, 32), num_classes=5), text)
    assert spec.input_shape == (3, 224, 224) and spec.resize == 256 and spec.transform_from == "--preprocess"
    px = torch.tensor([0.0, 127.0, 255.0]).view(1, 3, 1, 1).expand(1, 3, 224, 224).to(torch.uint8)
    out = spec.prepare(px)   # (px - 127) / 128, as the help text says
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([-127 / 128, 0.0, 1.0]), atol=1e-6)
    per_channel = parse_preprocess("mean=0.485,0.456,0.406,std=0.229,0.224,0.225,crop=160x128")
    assert per_channel["mean"] == (0.485, 0.456, 0.406) and per_channel["crop"] == (160, 128)


@pytest.mark.parametrize("value, needle", [
    ("resize=256,size=224", "unknown key 'size'"),
    ("resize=256,mean=abc", "mean=abc is not a number"),
    ("resize=200,crop=224", "larger than resize=200"),
    ("interpolation=cubic", "interpolation 'cubic'"),
    ("std=0", "must be positive"),
])
def test_preprocess_validation_is_one_line(value, needle):
    with pytest.raises(EdgekitError, match=needle):
        parse_preprocess(value)


def test_preprocess_mean_count_must_be_1_or_channels():
    with pytest.raises(EdgekitError, match="mean has 2 values but the model takes 3 channels"):
        apply_preprocess(ModelSpec(input_shape=(3, 8, 8), num_classes=2), parse_preprocess("mean=0.5,0.4"))


@pytest.mark.slow   # a CLI subprocess (~8 s on 2 shared cores); the in-process checks above are the default tier's
def test_cli_bad_preprocess_exits_2_with_one_line(tiny_pt2, tmp_path):
    result = run_cli("compress", "-m", str(tiny_pt2), "-d", str(_folder(tmp_path / "d", NAMES[:2])),
                     "--preprocess", "resize=128,crop=224", "-o", str(tmp_path / "out"), timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "crop 224x224 is larger than resize=128" in result.stderr.splitlines()[0]


def test_folder_of_the_models_classes_maps_onto_its_outputs_and_is_all_evaluation(tiny_pt2, tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(NAMES) + "\n")
    # three of the five classes, in folders named in another case and with '_' for spaces
    data_dir = _folder(tmp_path / "photos", ["Great_White_Shark", "tench", "HAMMERHEAD"])
    calibration = _folder(tmp_path / "unlabelled" / "deep", ["x"], per_class=4)
    opts = CompressOptions(model=str(tiny_pt2), data=str(data_dir), classes=str(tmp_path / "classes.txt"),
                           preprocess="resize=36,crop=32,mean=127,std=128", calibration=str(calibration.parent))
    model, data, mapping = _resolve(opts, trains=False)
    assert "head" not in model.notes and model.spec.num_classes == 5
    assert mapping.kind == "mapped" and mapping.data_to_model == [2, 4, 0]   # folders sort as G, H, t
    assert data.num_classes == 5 and data.class_names == NAMES
    assert len(data.test) == 9 and len(data.train) == 0                      # every image scored, none split off
    assert sorted(set(data.test.labels.tolist())) == [0, 2, 4]
    assert model.spec.resize == 36 and model.spec.mean == (127 / 255,) and data.test[0][0].shape == (3, 32, 32)
    images, split = data.calibration_source()
    assert split == "calibration" and len(images) == 4 and images[0][0].shape == (3, 32, 32)
    # a recipe that trains keeps the 80/20 split; classes that are not the model's need a new head (which an
    # exported program cannot have: said in one line)
    _, trained, _ = _resolve(opts, trains=True)
    assert len(trained.train) > 0
    other = _folder(tmp_path / "other", ["cats", "dogs"])
    with pytest.raises(EdgekitError, match="has 5 outputs but the data has 2 classes"):
        _resolve(CompressOptions(model=str(tiny_pt2), data=str(other), preprocess="crop=32",
                                 classes=str(tmp_path / "classes.txt")), trains=False)


def test_classes_count_must_match_outputs(tiny_pt2, tmp_path):
    with pytest.raises(EdgekitError, match="names 1000 classes but the model has 5 outputs"):
        _resolve(CompressOptions(model=str(tiny_pt2), data=str(_folder(tmp_path / "d", NAMES[:2])),
                                 classes="imagenet", preprocess="crop=32"))
