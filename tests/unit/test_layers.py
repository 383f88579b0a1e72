"""Layers import downward only (issue #21).

Every module under ``musicgen/`` is read with ``ast`` and every import in it is
checked, including imports inside functions and under ``if TYPE_CHECKING:``: a
lower layer never imports a higher one, not even lazily. The order, lowest first:

====  ==========================================  ===============================================
rank  layer                                       modules
====  ==========================================  ===============================================
0     base                                        musicgen (the package), config, storage, stopping,
                                                  runtime, pretrained: settings, URIs, process
                                                  plumbing and the shipped model's path; no music
1     music                                       musicgen.music: Melody, keys, formats, readers and writers
2     tokenizers                                  musicgen.tokenizers
3     data / models                               musicgen.data, musicgen.models
4     training / sampling                         musicgen.training, musicgen.sampling
5     serving / evaluation                        musicgen.serving, musicgen.evaluation
6     catalog                                     musicgen.catalog (the bulk job)
7     apps                                        musicgen.studio, musicgen.cli, musicgen.demo,
                                                  musicgen.generate_command, musicgen.client
====  ==========================================  ===============================================

Importing any module has no side effect that is cheap to see (a thread, a signal handler, a
file, an environment variable, a logging handler, a Ray start): that is checked too.

Modules of the same rank may import each other (``data`` and ``models`` are peers, as
are ``training`` and ``sampling``, and ``serving`` and ``evaluation``). A new top-level
module or package under ``musicgen/`` must be given a rank here before the test passes.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "musicgen"

LAYERS: dict[str, int] = {
    "musicgen": 0,  # the package itself (``from musicgen import __version__``)
    "config": 0,
    "storage": 0,
    "stopping": 0,
    "runtime": 0,
    "pretrained": 0,
    "music": 1,
    "tokenizers": 2,
    "data": 3,
    "models": 3,
    "training": 4,
    "sampling": 4,
    "serving": 5,
    "evaluation": 5,
    "catalog": 6,
    "studio": 7,
    "cli": 7,
    "demo": 7,
    "generate_command": 7,
    "client": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    """'musicgen.sampling.grammar' -> 'sampling'; 'musicgen' -> 'musicgen'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imported_modules(path: Path, module: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every musicgen module that ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "musicgen"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..music import y
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "musicgen":
                continue
            for alias in node.names:  # `from musicgen import storage` imports the module musicgen.storage
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in known else target))
    return found


def violations() -> list[str]:
    modules = all_modules()
    out = []
    for module, path in modules.items():
        own = layer_of(module)
        for line, target in sorted(set(imported_modules(path, module, set(modules)))):
            theirs = layer_of(target)
            if LAYERS[theirs] > LAYERS[own]:
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} ({own}, rank {LAYERS[own]}) "
                           f"imports {target} ({theirs}, rank {LAYERS[theirs]})")
    return out


def test_every_module_has_a_layer():
    unranked = sorted({layer_of(m) for m in all_modules()} - set(LAYERS))
    assert not unranked, f"give these a rank in LAYERS (tests/unit/test_layers.py): {unranked}"


def test_imports_run_down_the_layers_only():
    found = violations()
    assert not found, "imports running up the layer order:\n" + "\n".join(found)


def test_music_imports_no_tokenizer():
    # the rule the issue names on its own: key facts live in musicgen.music, not in a tokenizer
    for module, path in all_modules().items():
        if layer_of(module) == "music":
            targets = {t for _, t in imported_modules(path, module, set(all_modules()))}
            assert not {t for t in targets if layer_of(t) == "tokenizers"}, module


# Imports every module in a fresh interpreter and reports what importing changed. Ray sets
# RAY_CLIENT_MODE in its own __init__, so RAY_ variables are Ray's, not ours.
_SIDE_EFFECTS = """
import importlib, json, logging, os, pkgutil, signal, sys, threading
threads = {t.name for t in threading.enumerate()}
handlers = {int(s): signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
files, env, root_handlers = set(os.listdir(".")), dict(os.environ), list(logging.getLogger().handlers)
import musicgen
names = sorted(m.name for m in pkgutil.walk_packages(musicgen.__path__, "musicgen."))
for name in names:
    importlib.import_module(name)
ray = sys.modules.get("ray")
print(json.dumps({
    "modules": len(names),
    "threads": sorted({t.name for t in threading.enumerate()} - threads),
    "signal handlers": sorted(str(s) for s, h in handlers.items() if signal.getsignal(s) != h),
    "files": sorted(set(os.listdir(".")) - files),
    "environment": sorted(k for k in set(os.environ) | set(env)
                          if os.environ.get(k) != env.get(k) and not k.startswith("RAY_")),
    "root log handlers": len(logging.getLogger().handlers) - len(root_handlers),
    "ray started": bool(ray and ray.is_initialized()),
}))
"""


def test_importing_a_module_starts_nothing(tmp_path):
    """Importing any module of musicgen starts no thread, installs no signal handler, writes no file,
    sets no environment variable, configures no logging and starts no Ray (layout.md: importing a
    module starts nothing)."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run([sys.executable, "-c", _SIDE_EFFECTS], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found.pop("modules") == len(all_modules()) - 1  # every module but the package itself
    assert found == {"threads": [], "signal handlers": [], "files": [], "environment": [], "root log handlers": 0,
                     "ray started": False}


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("from musicgen.catalog.generate import reference_index\n", "musicgen.evaluation.report",
     ["musicgen.catalog.generate"]),
    ("def f():\n    import musicgen.catalog.bulk as b\n", "musicgen.music.melody", ["musicgen.catalog.bulk"]),
    ("from musicgen import storage, __version__\n", "musicgen.cli", ["musicgen.storage", "musicgen"]),
    ("from ..tokenizers import abc\n", "musicgen.music.midi", ["musicgen.tokenizers.abc"]),
    ("from . import melody\n", "musicgen.music", ["musicgen.music.melody"]),
    ("import numpy\nfrom typing import TYPE_CHECKING\n", "musicgen.music.melody", []),
])
def test_the_walker_sees_every_kind_of_import(tmp_path, source, module, expected):
    name = "__init__.py" if module == "musicgen.music" else "m.py"
    path = tmp_path / name
    path.write_text(source)
    known = set(all_modules())
    assert [t for _, t in imported_modules(path, module, known)] == expected
