"""`python -m rules.build_engine`: compile the engine's hot modules with mypyc into `build/compiled/`.

Run by `./dev setup` and `deploy/install.sh`; it does nothing when the build is current. Needs a C compiler and
Python's headers; without them the rules run in pure Python (see `rules.compiled`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from rules.compiled import MANIFEST, MODULES, OUT, ROOT, SUFFIX, current, digest

PACKAGES = ("rules", "alerting", "collector")
"""Copied for the build: the compiled modules and everything they import from the project."""
MYPY_CONFIG = "[mypy]\nstrict = True\nignore_missing_imports = True\n"
"""The project's type checking (pyproject.toml's [tool.mypy]), which the compiled code's types come from."""


def build(out: Path = OUT, root: Path = ROOT, force: bool = False) -> bool:
    """Compile `MODULES` into `out` unless it is current; whether it built. Built in a scratch directory and
    moved into place, so a process starting meanwhile sees the old build or the new one, never half."""
    if not force and current(out, root):
        return False
    from mypyc.build import mypycify
    from setuptools import setup

    before = digest(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".compiled-", dir=out.parent))
    cwd = os.getcwd()
    try:
        # a copy of the packages alone: installed, they sit in site-packages, where mypy would take every
        # other module for one of ours
        src = scratch / "src"
        for package in PACKAGES:
            shutil.copytree(root / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        if digest(src) != before:
            raise RuntimeError("the sources changed while they were copied; build again")
        (src / "mypy.ini").write_text(MYPY_CONFIG, encoding="utf-8")
        os.chdir(src)  # mypyc names the modules from their paths (rules/engine.py → rules.engine)
        extensions = mypycify(["--config-file", "mypy.ini", *(f"rules/{name}.py" for name in MODULES)],
                              opt_level="3", target_dir=str(scratch / "c"))
        os.chdir(scratch)  # not the project's pyproject.toml: setuptools builds only these extensions
        setup(name="gshp-engine", ext_modules=extensions, script_name="rules.build_engine",
              script_args=["-q", "build_ext", "--build-lib", str(scratch / "lib"), "--build-temp",
                           str(scratch / "tmp")])
        lib = scratch / "lib"
        shared = [p.name.removesuffix(SUFFIX) for p in lib.glob(f"*__mypyc{SUFFIX}")]
        if len(shared) != 1:
            raise RuntimeError(f"mypyc built {len(shared)} shared libraries in {lib}, expected one")
        if digest(root) != before:
            raise RuntimeError("the sources changed while they were compiled; build again")
        (lib / MANIFEST).write_text(json.dumps({"suffix": SUFFIX, "modules": list(MODULES), "shared": shared[0],
                                                "sources": before}, indent=1), encoding="utf-8")
        old = out.with_name(f"{scratch.name}-old")
        if out.exists():
            out.rename(old)
        lib.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    return True


def main() -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m rules.build_engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--force", action="store_true", help="build even when the build is current")
    p.add_argument("--check", action="store_true", help="only say whether the build is current (exit 1 if not)")
    a = p.parse_args()
    if a.check:
        ok = current()
        print(f"compiled engine in {OUT}: {'current' if ok else 'missing or stale'}")
        return 0 if ok else 1
    try:
        built = build(force=a.force)
    except Exception as exc:  # a compiler or mypyc failure: the pure-Python engine still runs
        print(f"compiled engine not built ({exc}); the rules run in pure Python, about 2× slower", file=sys.stderr)
        return 1
    print(f"compiled engine in {OUT}: {'built' if built else 'up to date'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
