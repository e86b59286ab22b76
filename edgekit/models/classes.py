"""Class names as data: what a model's outputs mean, and how a data folder's classes land on them.

A model's output classes come from its weights where they say (torchvision ``weights.meta["categories"]``,
a timm ImageNet-1k checkpoint, an edgekit checkpoint's ``spec.class_names``) or from the user
(``--classes imagenet|FILE``). A data set whose class names are all among the model's is *mapped* onto the
model's outputs - labels become output indices, the head stays, top-1 is over every output - instead of
having its head replaced by an untrained one. ImageNet-1k outputs answer to their synset id (n01440764) and
to each of their WordNet lemmas (``tench``, ``Tinca tinca``), from timm's ``ImageNetInfo`` (files installed
with timm: nothing downloads). Matching ignores case and reads ``_`` as a space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import EdgekitError, MissingDependency

IMAGENET = "imagenet"
IMAGENET_CLASSES = 1000
# A list of 1000 names is ImageNet-1k's when at least this share of them is a lemma of the same index
# (torchvision's categories differ from timm's lemmas at 2 of 1000: "crane" and "maillot" stand for
# "bird crane" / "tank suit").
IMAGENET_MATCH = 0.95


def normalise(name: str) -> str:
    """The form names are compared in: case-folded, ``_`` as a space, runs of spaces as one."""
    return " ".join(name.replace("_", " ").split()).casefold()


@dataclass(frozen=True)
class ClassVocabulary:
    """The names of a model's outputs (``names[i]`` is output i) and every alias each output answers to."""

    names: list[str]
    aliases: list[frozenset[str]]
    kind: str = "names"          # "imagenet" (ImageNet-1k, synset ids and lemmas) or "names" (the names only)

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, name: str) -> list[int]:
        """The outputs ``name`` stands for (several when it is ambiguous, e.g. ImageNet's two "crane")."""
        key = normalise(name)
        return [i for i, alias in enumerate(self.aliases) if key in alias]


@dataclass
class ClassMapping:
    """How the data's classes relate to the model's outputs (``resolve``'s answer)."""

    kind: str                            # identity | mapped | reordered | assumed | differ
    data_to_model: list[int] | None = None   # data label -> model output, when the data is mapped
    note: str = ""                       # one line for the manifest and the report
    record: dict = field(default_factory=dict)   # the manifest's ``classes`` record

    @property
    def remaps(self) -> bool:
        return self.kind in ("mapped", "reordered")


def imagenet_vocabulary(display: list[str] | None = None) -> ClassVocabulary:
    """ImageNet-1k in its standard order: names are the first lemma (or ``display``, e.g. torchvision's own
    category names); aliases the synset id, every lemma and the display name."""
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        raise MissingDependency("timm", "timm", "ImageNet class names (--classes imagenet)") from None
    info = ImageNetInfo("imagenet-1k")
    synsets = list(info.label_names())
    lemmas = [info.index_to_description(i) for i in range(len(synsets))]
    names = list(display) if display is not None else [lemma.split(",")[0].strip() for lemma in lemmas]
    aliases = [frozenset({normalise(s), normalise(lemma), normalise(name)}
                         | {normalise(part) for part in lemma.split(",")})
               for s, lemma, name in zip(synsets, lemmas, names)]
    return ClassVocabulary(names, aliases, IMAGENET)


def vocabulary(names: list[str]) -> ClassVocabulary:
    """The vocabulary of a list of output names; a list that is ImageNet-1k's (by synset id or lemma at each
    index, ``IMAGENET_MATCH``) gains ImageNet's aliases, so synset-named folders map onto torchvision's
    category names and onto a checkpoint saved with them."""
    if len(names) == IMAGENET_CLASSES:
        try:
            imagenet = imagenet_vocabulary()
        except MissingDependency:
            imagenet = None
        if imagenet is not None:
            hits = sum(normalise(n) in a for n, a in zip(names, imagenet.aliases))
            if hits >= IMAGENET_MATCH * IMAGENET_CLASSES:
                return imagenet_vocabulary(list(names))
    return ClassVocabulary(list(names), [frozenset({normalise(n)}) for n in names])


def classes_option(value: str | Path | list[str]) -> tuple[list[str], str]:
    """``--classes``/``classes=``: ``imagenet``, a file with one name per line, or a list of names ->
    (names, where they came from)."""
    if isinstance(value, (list, tuple)):
        names = [str(n) for n in value]
        where = "classes= list"
    elif str(value).strip().lower() in (IMAGENET, "imagenet-1k", "imagenet1k"):
        return imagenet_vocabulary().names, "--classes imagenet (ImageNet-1k, timm ImageNetInfo)"
    else:
        path = Path(value)
        if not path.is_file():
            raise EdgekitError(f"--classes {value}: no such file",
                               "give 'imagenet' or a text file with one class name per line, in output order")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise EdgekitError(f"--classes {value} is not a UTF-8 text file",
                               "give a text file with one class name per line, in output order") from None
        names = [line.strip() for line in lines if line.strip()]
        where = f"--classes {path}"
    if not names:
        raise EdgekitError(f"{where} holds no class names", "give one class name per line, in output order")
    return names, where


def resolve(model_names: list[str] | None, model_outputs: int, data_names: list[str]) -> ClassMapping:
    """How ``data_names`` (the data's classes, in label order) land on a model with ``model_outputs`` outputs
    named ``model_names`` (None: unnamed).

    - every data class is one of the model's: *identity* when label i is output i, else *reordered* (the
      same set in another order) or *mapped* (a subset, or another order of some): labels become output
      indices, nothing is replaced;
    - the model has no names, or the names do not all match, but the counts are equal: *assumed* (the data's
      label order is taken as the model's, and said so);
    - otherwise the classes *differ*: the head is replaced (by the caller).
    A data class that names several outputs (ImageNet's two "crane") is an error naming its synset ids."""
    n_data = len(data_names)
    if model_names is not None:
        vocab = vocabulary(model_names)
        found = {name: vocab.lookup(name) for name in data_names}
        ambiguous = {name: hits for name, hits in found.items() if len(hits) > 1}
        unmatched = [name for name, hits in found.items() if not hits]
        if not unmatched and ambiguous:
            name, hits = next(iter(ambiguous.items()))
            raise EdgekitError(f"class folder '{name}' matches {len(hits)} of the model's classes "
                               f"(outputs {', '.join(map(str, hits))})",
                               "rename it to the class's synset id or its full name" if vocab.kind == IMAGENET
                               else "rename it to exactly one of the model's class names")
        if not unmatched:
            to_model = [found[name][0] for name in data_names]
            base = {"model_classes": model_outputs, "data_classes": n_data, "vocabulary": vocab.kind}
            if to_model == list(range(model_outputs)):
                return ClassMapping("identity", to_model, f"the data's {n_data} classes are the model's, in its order",
                                    {**base, "mapping": "identity"})
            kind = "reordered" if n_data == model_outputs and sorted(to_model) == list(range(model_outputs)) \
                else "mapped"
            note = (f"the data's {n_data} classes are the model's in another order: labels remapped to its outputs"
                    if kind == "reordered" else
                    f"mapped the data's {n_data} classes onto the model's {model_outputs} outputs by name "
                    f"(top-1 over all {model_outputs})")
            return ClassMapping(kind, to_model, note,
                                {**base, "mapping": kind,
                                 "data_to_model": {name: {"output": i, "model_name": vocab.names[i]}
                                                   for name, i in zip(data_names, to_model)}})
        if n_data == model_outputs:
            shown = ", ".join(unmatched[:3]) + (" ..." if len(unmatched) > 3 else "")
            return ClassMapping("assumed", None,
                                f"{len(unmatched)} of the data's {n_data} class names are not the model's "
                                f"({shown}): the data's label order is assumed to be the model's output order",
                                {"model_classes": model_outputs, "data_classes": n_data, "mapping": "assumed",
                                 "unmatched": unmatched[:20]})
        return ClassMapping("differ", None,
                            f"the data's classes are not the model's ({len(unmatched)} of {n_data} not among its "
                            f"{model_outputs}, e.g. '{unmatched[0]}')",
                            {"model_classes": model_outputs, "data_classes": n_data, "mapping": "head replaced",
                             "unmatched": unmatched[:20]})
    if n_data == model_outputs:
        return ClassMapping("assumed", None,
                            f"the model names no classes: the data's {n_data} classes are assumed to be its "
                            f"{model_outputs} outputs in label order (pass --classes to map by name)",
                            {"model_classes": model_outputs, "data_classes": n_data, "mapping": "assumed"})
    return ClassMapping("differ", None,
                        f"the model names no classes and has {model_outputs} outputs, the data {n_data} classes",
                        {"model_classes": model_outputs, "data_classes": n_data, "mapping": "head replaced"})
