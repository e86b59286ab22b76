"""Deciding whether a ``torch.export`` archive (.pt2) can be opened without trusting its author.

``torch.export.load`` is not safe on untrusted files: pickled weights and constants go through
``torch.load(weights_only=False)``, sample inputs fall back to it, opaque constants go through
``pickle.loads``, ``guards_code`` strings are ``exec``-ed by ``.module()``, symbolic shape strings go
through ``sympy.sympify`` (an ``eval``), node targets are resolved by ``getattr`` from the ``torch``
module (``torch.os.system`` resolves) and node annotations are pasted into generated Python.

So an untrusted archive is read into memory once and checked against an allow-list of what a plain
``torch.export.save`` of a model produces: raw tensor weights and constants, tensor-only sample inputs,
no guards code, node targets that are registered torch operators (or a few ``operator``/``math``
functions), symbolic expressions built from sympy's printer vocabulary only, and no string that could
break out of a generated-code comment. The same bytes are then handed to ``torch.export.load``, so the
file cannot change between the check and the load. Anything outside the allow-list needs the user's
explicit trust (``--trust-pickle`` / ``trust_pickle=True``).
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from typing import Iterator

import torch
import torch.export.pt2_archive.constants as C

from edgekit.errors import EdgekitError

# What a sympy ``srepr`` of torch's symbolic shapes is made of; any other name could reach a Python
# builtin through sympify's eval.
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le",
    "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "Equality", "Unequality",
    "And", "Or", "Not", "True", "False", "None", "oo", "zoo", "nan", "floor", "ceiling", "sqrt", "S", "One",
    "Zero", "NegativeOne", "Half", "Infinity", "NegativeInfinity", "BooleanTrue", "BooleanFalse",
    "positive", "negative", "integer", "real", "nonnegative", "nonpositive", "finite", "precision",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
    "ToFloat", "Identity",
})
_EXPR_TOKEN = re.compile(r"\s+|\d+(?:\.\d+)?(?:e[+-]?\d+)?|'[a-z]+\d*'|[A-Za-z_][A-Za-z0-9_]*|[-+*/%(),=<>!&|~^]")
_SYMBOL_NAME = re.compile(r"[a-z]{1,4}\d+")  # s0, u12: never a Python builtin
_OPERATOR_NAMES = frozenset({"getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pow", "eq",
                             "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_", "abs", "pos", "invert"})
_MATH_NAMES = frozenset({"ceil", "floor", "sqrt", "trunc", "log2", "exp"})


def vet_pt2(data: bytes, name: str) -> None:
    """Raise ``EdgekitError`` naming the first reason ``data`` (a .pt2 archive) could run code when loaded."""
    def refuse(why: str) -> EdgekitError:
        return EdgekitError(f"{name}: {why}; loading it could run code from the file",
                            "re-run with --trust-pickle only if you trust whoever made this file")

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise EdgekitError(f"{name} is not a torch.export archive (not a zip file)") from None
    names = archive.namelist()
    roots = {n.split("/", 1)[0] for n in names}
    # One root folder, as torch.export.save writes: anything at the zip's top level (the legacy
    # "version" + pickled "serialized_*" layout that torch falls back to) is refused.
    if len(roots) != 1 or any("/" not in n for n in names):
        raise refuse("it is not in the current torch.export.save format")
    files = {n.split("/", 1)[1]: n for n in names}
    models = sorted(f for f in files if f.startswith(C.MODELS_DIR) and f.endswith(".json"))
    if not models:
        raise refuse("it is not in the current torch.export.save format")
    for model_file in models:
        model = model_file[len(C.MODELS_DIR):-len(".json")]
        for kind, folder, config_format in (("weights", C.WEIGHTS_DIR, C.WEIGHTS_CONFIG_FILENAME_FORMAT),
                                            ("constants", C.CONSTANTS_DIR, C.CONSTANTS_CONFIG_FILENAME_FORMAT)):
            if f"{folder}{model}.pt" in files:
                raise refuse(f"its {kind} are a pickle (legacy format)")
            config_file = config_format.format(model)
            if config_file not in files:
                raise refuse(f"its {kind} config is missing")
            for fqn, entry in json.loads(archive.read(files[config_file])).get("config", {}).items():
                if entry.get("use_pickle") or entry.get("tensor_meta") is None or not str(
                        entry.get("path_name", "")).startswith((C.WEIGHT_FILENAME_PREFIX,
                                                                C.TENSOR_CONSTANT_FILENAME_PREFIX)):
                    raise refuse(f"its {kind} entry '{fqn}' is a pickled object, not raw tensor data")
        sample = files.get(C.SAMPLE_INPUTS_FILENAME_FORMAT.format(model))
        if sample is not None:
            _tensors_only(archive.read(sample), refuse)
        _vet_program(json.loads(archive.read(files[model_file])), refuse)


def _tensors_only(blob: bytes, refuse) -> None:
    if not blob:
        return
    try:
        torch.load(io.BytesIO(blob), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise refuse(f"its sample inputs are not plain tensors ({type(err).__name__})") from None


def _vet_program(program: dict, refuse) -> None:
    if program.get("guards_code"):
        raise refuse("it carries guards code (Python source that loading executes)")
    for key, value in _items(program):
        if key == "custom":
            raise refuse("its graph carries custom annotations (pasted into generated code)")
        if not isinstance(value, str):
            continue
        if ("\n" in value or "\r" in value) and key != "stack_trace":
            raise refuse(f"a '{key}' string in its graph spans lines")
        if key in ("target", "as_operator"):
            _vet_target(value, refuse)
        elif key == "expr_str":
            _vet_expr(value, refuse)


def _items(obj) -> Iterator[tuple[str, object]]:
    """Every (key, value) pair in a JSON document, depth first."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                yield k, v
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)


def _vet_target(target: str, refuse) -> None:
    parts = target.split(".")
    if parts[0] == "_operator" and len(parts) == 2 and parts[1] in _OPERATOR_NAMES:
        return
    if parts[0] == "math" and len(parts) == 2 and parts[1] in _MATH_NAMES:
        return
    if parts[:2] == ["torch", "ops"] and len(parts) in (4, 5) and all(
            p.isidentifier() and not p.startswith("_") for p in parts[2:]):
        resolved = getattr(torch.ops, parts[2], None)
        for part in parts[3:]:
            resolved = getattr(resolved, part, None) if resolved is not None else None
        if isinstance(resolved, (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)):
            return
    raise refuse(f"its graph calls '{target[:80]}', which is not a torch operator")


def _vet_expr(expr: str, refuse) -> None:
    pos = 0
    while pos < len(expr):
        match = _EXPR_TOKEN.match(expr, pos)
        if match is None:
            raise refuse(f"a symbolic shape '{expr[:80]}' is not a plain expression")
        token = match.group()
        if (token[0].isalpha() or token[0] == "_") and token not in _SYMPY_NAMES and not _SYMBOL_NAME.fullmatch(token):
            raise refuse(f"a symbolic shape '{expr[:80]}' names '{token}'")
        pos = match.end()
