"""The engine's hot modules compiled with mypyc, used only when built from exactly the current sources.

The strictly typed rule modules compile as they are, about twice as fast per reading; the `.py` files stay
the only implementation. `python -m rules.build_engine` (run by `./dev setup` and `deploy/install.sh`) builds
`MODULES` into `build/compiled/` beside the packages, with a manifest of the sources' hashes. At import,
`activate()` puts that build first on `rules.__path__` only when every hash matches; a stale build is
ignored with one warning naming the fix, and `GSHP_ENGINE=python` forces the pure-Python engine.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)

MODULES = ("windows", "counters", "balance", "sequential", "quality", "forensic", "lifecycle", "roles",
           "engine", "incidents", "compliance", "events")
"""The `rules` modules compiled: the engine and everything it runs per reading and per evaluation."""

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "compiled"
MANIFEST = "manifest.json"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
BUILDER = ("compiled.py", "build_engine.py")
"""What chooses and builds the engine, not part of it."""
WORDS = {"compiled": "编译引擎 compiled engine", "python": "纯 Python 引擎 pure-Python engine"}
"""How commands name the engine that ran."""
ENV = "GSHP_ENGINE"
"""`python` forces the pure-Python engine, `compiled` fails unless the build is current; unset: either."""


def sources(root: Path = ROOT) -> list[Path]:
    """Every file the compiled code was type-checked against: a change to any of them makes a build stale."""
    files = [*(root / "rules").glob("*.py"), *(root / "alerting").glob("*.py"),
             root / "collector" / "model.py", root / "collector" / "duration.py"]
    return sorted(f for f in files if f.is_file() and f.name not in BUILDER)


def digest(root: Path = ROOT) -> dict[str, str]:
    """Each source's SHA-256, by path relative to `root`."""
    return {f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in sources(root)}


def manifest(out: Path = OUT) -> dict[str, object] | None:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def current(out: Path = OUT, root: Path = ROOT) -> bool:
    """Whether `out` holds a build of exactly these sources and modules, for this interpreter."""
    m = manifest(out)
    return (m is not None and m.get("suffix") == SUFFIX and m.get("modules") == list(MODULES)
            and m.get("sources") == digest(root)
            and all((out / "rules" / f"{name}{SUFFIX}").is_file() for name in MODULES))


def activate(path: list[str], out: Path = OUT, root: Path = ROOT) -> str:
    """Put the compiled modules first on the `rules` package's `path` when the build is current; the engine
    that will run, `compiled` or `python`."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice == "python" or not (out / MANIFEST).exists():
        if choice == "compiled":
            raise RuntimeError(f"{ENV}=compiled, but no compiled engine is built in {out} (./dev setup builds it)")
        return "python"
    if not current(out, root):
        if choice == "compiled":
            raise RuntimeError(f"{ENV}=compiled, but the build in {out} is stale (./dev setup rebuilds it)")
        log.warning("编译的规则引擎与源码不符，改用纯 Python 引擎（./dev setup 重新编译） / the compiled rules engine "
                    "in %s does not match the sources; running the pure-Python engine (./dev setup rebuilds it)",
                    out)
        return "python"
    m = manifest(out)
    assert m is not None
    shared = str(m["shared"])
    if shared not in sys.modules:  # the compiled modules' common library, imported by name from each of them
        spec = importlib.util.spec_from_file_location(
            shared, out / f"{shared}{SUFFIX}", loader=importlib.machinery.ExtensionFileLoader(
                shared, str(out / f"{shared}{SUFFIX}")))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[shared] = module
        spec.loader.exec_module(module)
    path.insert(0, str(out / "rules"))
    return "compiled"


def running() -> str:
    """The engine this process imported: `compiled` when `rules.engine` is the compiled module."""
    from rules import engine

    return "compiled" if (engine.__file__ or "").endswith(SUFFIX) else "python"
