"""Lambda artifact budget: zip size and handler import time (the INIT phase) from the unpacked zip.

    make bench-lambda     (or: python -m bench.lambda_artifact [--runs 30])

Builds dist/lambda.zip if it is missing, unpacks it into an empty folder, and imports each
handler in a fresh, isolated interpreter of the runtime's Python version (-I -S: only that
folder on the path), timing the import inside the process. Prints a Markdown table.
"""

import argparse
import statistics
import subprocess
import tempfile
import zipfile
from pathlib import Path

from devtools import build

HANDLERS = ["functions.scrape", "functions.carto_refresh"]
PROBE = """
import sys, time
sys.path.insert(0, {root!r})
t0, c0 = time.perf_counter(), time.process_time()
import {module}
print(time.perf_counter() - t0, time.process_time() - c0)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    zip_path = build.DIST / "lambda.zip"
    if not zip_path.exists():
        build.build_lambda(zip_path)
    python = build.runtime_python()
    with tempfile.TemporaryDirectory() as root:
        zipfile.ZipFile(zip_path).extractall(root)
        for path in Path(root).rglob("*"):  # read-only, like /var/task: no bytecode gets cached
            path.chmod(0o555 if path.is_dir() else 0o444)
        print(f"dist/lambda.zip: {zip_path.stat().st_size / 1e6:.2f} MB (budget 6 MB); "
              f"unpacked {sum(p.stat().st_size for p in Path(root).rglob('*') if p.is_file()) / 1e6:.1f} MB\n")
        print("| handler | import median (wall) | min | max | median CPU time | runs |")
        print("|---|---|---|---|---|---|")
        for module in HANDLERS:
            wall, cpu = [], []
            for _ in range(args.runs):
                out = subprocess.run([python, "-I", "-S", "-c", PROBE.format(root=root, module=module)],
                                     capture_output=True, text=True, check=True, cwd=root).stdout.split()
                wall.append(float(out[0]) * 1000)
                cpu.append(float(out[1]) * 1000)
            print(f"| {module}.handler | {statistics.median(wall):.1f} ms | {min(wall):.1f} ms | "
                  f"{max(wall):.1f} ms | {statistics.median(cpu):.1f} ms | {args.runs} |")
        for path in Path(root).rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    print(f"\n{python}, budget: 150 ms median")


if __name__ == "__main__":
    main()
