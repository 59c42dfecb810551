"""The stated public API: each module's `__all__` names its public names, every other top-level
name is private (a leading underscore), and no module, test or script uses another module's
private name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGES = ("covid_chestxray_seg", "covid_chestxray_seg_tools")
# Conventional module-level names that are no API.
NOT_API = {"logger"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_modules() -> list[Path]:
    paths = [REPO / "covid_chestxray_seg.py", *sorted((REPO / "covid_chestxray_seg_tools").rglob("*.py"))]
    return [path for path in paths if path.name != "__main__.py"]


def _top_level(statements: list[ast.stmt]) -> list[ast.stmt]:
    """A module's top-level statements, those inside its top-level `if` and `try` blocks too."""
    found = []
    for node in statements:
        found.append(node)
        if isinstance(node, ast.If):
            found += _top_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            found += _top_level(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                found += _top_level(handler.body)
    return found


def _defined_names(tree: ast.Module) -> list[str]:
    """The names a module defines at its top level (functions, classes, assigned names)."""
    names = []
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def _imported_names(tree: ast.Module) -> list[str]:
    names = []
    for node in _top_level(tree.body):
        if isinstance(node, ast.ImportFrom):
            names += [alias.asname or alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.asname or alias.name.split(".")[0] for alias in node.names]
    return names


def _declared(tree: ast.Module) -> list[str] | None:
    """The module's `__all__`, a literal list of strings; None when it has none."""
    for node in _top_level(tree.body):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return list(ast.literal_eval(value))
    return None


@pytest.mark.parametrize(
    "path",
    _library_modules(),
    ids=_module_name,
)
def test_every_module_states_its_public_names(path):
    # Read, not imported: fiftyone_export imports FiftyOne, an optional extra.
    name = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    declared = _declared(tree)
    assert declared is not None, f"{name} has no __all__"
    defined = _defined_names(tree)
    missing = [entry for entry in declared if entry not in defined and entry not in _imported_names(tree)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    assert len(set(declared)) == len(declared), f"{name}.__all__ names something twice"
    undeclared = [
        entry for entry in defined if not entry.startswith("_") and entry not in declared and entry not in NOT_API
    ]
    assert not undeclared, (
        f"{name}: public but not in __all__ (add it there, or name it with a leading _): {undeclared}"
    )


def _private_uses(path: Path) -> list[str]:
    """`from <our module> import _name` and `<our module>._name` in one file, as text."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    ours = {}  # local name -> our module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                ours[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    ours[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ours
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_private_name_is_used_across_modules():
    folders = ("covid_chestxray_seg_tools", "tests", "scripts", "compat", "benchmarks")
    paths = [REPO / "covid_chestxray_seg.py", *(path for folder in folders for path in (REPO / folder).rglob("*.py"))]
    uses = {str(path.relative_to(REPO)): _private_uses(path) for path in paths}
    assert not {file: found for file, found in uses.items() if found}


def test_the_check_finds_a_private_name(tmp_path):
    """What the check above looks for, on a file that does both."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from covid_chestxray_seg_tools.publish import _make_plan\n"
        "from covid_chestxray_seg_tools import staging\n"
        "staging._remove_leftovers\n"
        "staging.__name__\n",
        encoding="utf-8",
    )
    assert _private_uses(sample) == [
        "line 1: from covid_chestxray_seg_tools.publish import _make_plan",
        "line 3: staging._remove_leftovers",
    ]


# A command-line option in a string: "--split", "--repo-id" (not "---", not a word inside "a--b").
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _error_texts(tree: ast.Module) -> list[tuple[int, str]]:
    """The string parts of every `raise SomeError(...)` in a module, with their line."""
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            for argument in [*node.exc.args, *(keyword.value for keyword in node.exc.keywords)]:
                for part in ast.walk(argument):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        texts.append((part.lineno, part.value))
    return texts


def test_no_library_error_names_a_command_line_option():
    """Errors name settings as `${name}` fields; only the command's boundary words them as
    options (see errors.CovidSegError), so the library reads the same from Python."""
    found = []
    for path in _library_modules():
        if "cli" in path.relative_to(REPO).parts:
            continue
        for line, text in _error_texts(ast.parse(path.read_text(encoding="utf-8"))):
            if _FLAG.search(text):
                found.append(f"{path.relative_to(REPO)}:{line}: {text!r}")
    assert not found


def test_the_check_finds_an_option_in_an_error():
    tree = ast.parse('raise ValueError(f"--split {x}: no such split")\nraise ValueError("split: fine")\n')
    assert [text for _, text in _error_texts(tree) if _FLAG.search(text)] == ["--split "]


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    arguments = function.args
    names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return [name for name in names if name not in ("self", "cls")]


def test_no_function_takes_more_than_eight_parameters():
    """What a task is asked for travels as one frozen object (BuildOptions, PublishRequest,
    EvaluateRequest, ...), not as a relay of parameters passed on unchanged."""
    crowded = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name}({len(_parameters(node))})"
        for path in _library_modules()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and len(_parameters(node)) > 8
    ]
    assert not crowded
