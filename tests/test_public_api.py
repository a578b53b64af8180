"""Libraries are used through their public API: no private name of pg8000, urllib3, requests,
Apprise or any other package is read, called, overridden or imported. A private name pins the
project to one version of a library and breaks silently with the next one.

A name is private when it starts with one underscore. Our own private names (defined somewhere in
this repository) are ours to use; any other one reached through an attribute, a getattr string or
an import is a library's."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Underscored names that are public all the same: namedtuple's documented methods (the
# underscore only keeps them from field names), and the standard library's regular expression
# parser, which filters.check_trigger reads to refuse nested repeats (the standard library is
# pinned with the interpreter, .python-version and the Lambda runtime, and test_notify_rules
# fails should its shape change).
PUBLIC = {"_replace", "_asdict", "_fields", "_make", "_parser"}
SOURCES = sorted(p for folder in ("shared", "functions", "devtools", "bench", "infra")
                 for p in (ROOT / folder).rglob("*.py")
                 if not any(part.startswith(".") for part in p.relative_to(ROOT).parts))  # not a bench's venv


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def our_names(paths) -> set[str]:
    """Every private name this repository defines: functions, classes, variables, attributes
    assigned, parameters, keyword arguments of our own calls."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
    return {name for name in names if private(name)}


def reached(path: Path) -> list[tuple[int, str]]:
    """(line, private name) for each private name `path` reaches in something else."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and private(node.attr):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
                and private(node.args[1].value):
            found.append((node.lineno, node.args[1].value))
        elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith(("shared", "functions", "tests")):
            found += [(node.lineno, alias.name) for alias in node.names if private(alias.name)]
            found += [(node.lineno, part) for part in (node.module or "").split(".") if private(part)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, part) for alias in node.names for part in alias.name.split(".") if private(part)]
    return found


def test_no_library_private_name_is_used():
    ours = our_names(SOURCES)
    used = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in SOURCES
            for line, name in reached(path) if name not in ours | PUBLIC]
    assert not used, "private names of libraries:\n" + "\n".join(used)


@pytest.mark.parametrize("code, name", [
    ("con._usock.settimeout(1)", "_usock"),
    ("getattr(con, '_backend_key_data', None)", "_backend_key_data"),
    ("from pg8000.core import _make_socket", "_make_socket"),
    ("response._original_response.msg", "_original_response"),
    ("import urllib3._collections", "_collections"),
])
def test_the_check_finds_a_private_name(tmp_path, code, name):
    path = tmp_path / "example.py"
    path.write_text(code + "\n")
    assert name in [found for _, found in reached(path)]
    assert name not in our_names(SOURCES)
