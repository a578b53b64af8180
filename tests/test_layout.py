"""The README's layout is the tree's: every package and module under shared/ and functions/ is
named in its Layout section, under its package's line, and nothing it names is missing."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layout() -> dict[str, str]:
    """The README's Layout block: package folder -> the words of its entry."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    folder = None
    for line in block.splitlines():
        if line[:1].strip():
            folder, rest = line.split(None, 1)
            entries[folder] = rest
        elif folder:
            entries[folder] += " " + line.strip()
    return entries


def modules(folder: str) -> set[str]:
    return {p.stem for p in (ROOT / folder).glob("*.py") if p.stem != "__init__"}


def test_every_package_and_module_is_in_the_readme_layout():
    entries = layout()
    packages = ["functions/"] + sorted(f"{p.parent.relative_to(ROOT)}/" for p in (ROOT / "shared").glob("*/__init__.py"))
    for package in packages:
        assert package in entries, f"{package} is not in the README's layout"
        words = set(re.findall(r"[a-z_]+", entries[package]))
        missing = {name for name in modules(package) if name not in words}
        subpackages = {p.parent.name for p in (ROOT / package).glob("*/__init__.py")}
        missing |= {name for name in subpackages if name not in words}
        assert not missing, f"{package}: {sorted(missing)} not in the README's layout"


def test_the_readme_layout_names_only_what_exists():
    for folder in layout():
        assert (ROOT / folder).is_dir(), f"the README's layout names {folder}, which does not exist"
