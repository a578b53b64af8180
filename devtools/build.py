"""Build both deploy artifacts from the same source tree: `make build`.

    python -m devtools.build lambda   ->  dist/lambda.zip
    python -m devtools.build heroku   ->  dist/heroku.tar.gz

dist/lambda.zip holds functions/, shared/ and the runtime dependencies installed for the
Lambda runtime and architecture the template declares (LAMBDA_PYTHON, LAMBDA_ARCH below).
boto3 is not bundled: the Lambda runtime has it, and a bundled copy would triple the zip
(over the 5 MB budget) and slow every cold start; only the secrets loader and the
dispatcher use it, through long-stable APIs.

dist/heroku.tar.gz is what `git push heroku` would deploy: Procfile, requirements.txt,
.python-version, app.json and the code.

Both are reproducible: sorted entries, fixed timestamps and modes, no caches, so building
twice from one commit gives byte-identical files.
"""

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
LAMBDA_PYTHON = os.environ.get("LAMBDA_PYTHON", "3.13")  # the template's runtime: python3.13
LAMBDA_ARCH = os.environ.get("LAMBDA_ARCH", "x86_64")  # x86_64 | arm64, as in the template
CODE = ["functions", "shared"]  # the deployed packages; devtools/, tests/, bench/ stay out
HEROKU_FILES = ["Procfile", "requirements.txt", ".python-version", "app.json", "jobs.example.toml", "bin/post_compile"]
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
SKIP_DIRS = {"__pycache__", "bin", "tests", "test"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".c", ".h", ".pyx", ".pxd", ".pyi")  # caches and C sources
# Dependency parts a scheduled job never uses, dropped to keep the zip under 5 MB; the
# artifact smoke test proves the handlers, filters and notifications still work without them.
TRIM = (
    "yaml/_yaml.*.so",  # PyYAML's optional C speed-up: it falls back to pure Python
    "apprise/assets/*",  # icons for desktop notifications (Windows, macOS, D-Bus)
    "apprise/i18n/*",  # translations of apprise's own messages: English is built in
    "dateutil/zoneinfo/*.tar.gz",  # dateutil's own copy of the tz database: nothing here reads it
    "charset_normalizer/*.so",  # mypyc speed-ups of md.py/cd.py, which remain and are used instead
    "*.dist-info/RECORD",  # pip's install record: it hashes console scripts whose first line names
                           # the building machine's Python, so it differs between checkouts
)
PLATFORM_TAGS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64"],
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64"],
}


def source_files(folder: Path, keep_all: bool = False):
    """Every file under `folder` that belongs in an artifact (or, keep_all, every file), sorted."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and (keep_all or not SKIP_DIRS & set(rel.parts[:-1])
                               and not path.name.endswith(SKIP_SUFFIXES)):
            yield path, rel


def trim(folder: Path) -> None:
    for pattern in TRIM:
        for path in folder.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def install_dependencies(target: Path) -> None:
    """pip-install requirements.txt as wheels for the Lambda runtime into `target`."""
    platforms = [arg for tag in PLATFORM_TAGS[LAMBDA_ARCH] for arg in ("--platform", tag)]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--no-warn-conflicts",
         "--target", str(target), "--implementation", "cp", "--python-version", LAMBDA_PYTHON,
         "--only-binary=:all:", *platforms, "-r", str(ROOT / "requirements.txt")],
        check=True,
    )


def _jobs_file() -> list[tuple[str, Path]]:
    """The jobs file ($JOBS_FILE, else ./jobs.toml), shipped as jobs.toml; none if absent."""
    path = Path(os.environ.get("JOBS_FILE") or ROOT / "jobs.toml")
    if not path.exists():
        print(f"note: no jobs file at {path}: the artifacts carry none (set JOBS_FILE, or JOBS_TOML at run time)",
              file=sys.stderr)
        return []
    return [("jobs.toml", path)]


def build_lambda(out: Path = DIST / "lambda.zip") -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        install_dependencies(staging)
        trim(staging)
        # Clean the dependencies (no caches, no C sources) before our code joins them.
        for path, rel in list(source_files(staging, keep_all=True)):
            if (path, rel) not in set(source_files(staging)):
                path.unlink()
        for package in CODE:
            for path, rel in source_files(ROOT / package):
                (staging / package / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, staging / package / rel)
        for name, path in _jobs_file():
            shutil.copyfile(path, staging / name)
        compile_bytecode(staging)
        out.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for path, rel in source_files(staging, keep_all=True):
                info = zipfile.ZipInfo(rel.as_posix(), FIXED_TIME)
                info.external_attr = 0o100644 << 16  # regular file, rw-r--r--: Lambda only reads
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    return out


# Imported lazily, but by every run, so compiled too: each kind's run module (loaded on first
# use, see shared/app/kinds.py) and the PostgreSQL driver.
RUN_IMPORTS = ["shared.scrape.run", "shared.refresh.run", "pg8000.native"]

# Run by the runtime's Python inside the staging folder: import the handlers, then compile
# every module they loaded from the folder. Only those: what loads lazily (HTML parsing,
# notifications) stays source, which keeps the zip small.
_COMPILE_IMPORTED = """
import importlib, py_compile, sys
from pathlib import Path
root = Path.cwd()
for handler in sys.argv[1:]:
    importlib.import_module(handler)
for module in list(sys.modules.values()):
    source = Path(getattr(module, "__file__", None) or "/")
    if source.suffix == ".py" and root in source.parents:
        rel = source.relative_to(root)
        py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)),
                           dfile=f"/var/task/{rel}", doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def compile_bytecode(folder: Path) -> None:
    """Ship .pyc files of what a cold start imports: /var/task is read-only, so without them
    every cold start compiles those modules again. Hash-based pycs (no timestamps) keep the
    build reproducible. Without an interpreter of the runtime's version: sources only."""
    python = runtime_python()
    if python is None:
        print(f"note: no python{LAMBDA_PYTHON} here: lambda.zip ships without bytecode (slower cold starts)",
              file=sys.stderr)
        return
    handlers = [f"{package}.{path.stem}" for package in ["functions"]
                for path in sorted((folder / package).glob("*.py")) if path.stem != "__init__"]
    handlers += RUN_IMPORTS
    subprocess.run([python, "-I", "-S", "-B", "-c", f"import sys; sys.path.insert(0, ''); {_COMPILE_IMPORTED}",
                    *handlers], cwd=folder, check=True, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


def runtime_python() -> str | None:
    """An interpreter of the Lambda runtime's Python version, if this machine has one."""
    name = f"python{LAMBDA_PYTHON}"
    on_path = shutil.which(name)
    if on_path and "/shims/" not in on_path:  # a pyenv shim may refuse to run that version
        return on_path
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{LAMBDA_PYTHON}*/bin/{name}"))
    return str(pyenv[-1]) if pyenv else None


def build_heroku(out: Path = DIST / "heroku.tar.gz") -> Path:
    files = [(name, ROOT / name) for name in HEROKU_FILES] + _jobs_file()
    for package in CODE:
        files += [((Path(package) / rel).as_posix(), path) for path, rel in source_files(ROOT / package)]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(files):
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out.parent.mkdir(exist_ok=True)
    # mtime=0 and no file name in the gzip header keep the archive byte-identical.
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())
    return out


def main(argv=None) -> int:
    targets = (argv if argv is not None else sys.argv[1:]) or ["lambda", "heroku"]
    for target in targets:
        out = {"lambda": build_lambda, "heroku": build_heroku}[target]()
        print(f"{out.relative_to(ROOT)}: {out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
