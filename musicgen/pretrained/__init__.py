"""The model that ships inside the package: what ``--model`` means when it is left out.

It lives in ``musicgen/pretrained/<name>/`` as an ordinary artifact (``weights.pt`` +
``model.json``), next to ``SHA256SUMS`` and its ``MODEL_CARD.md``, and is found with
``importlib.resources``, so a pip install and a ``ray job submit`` working directory both have it.
Its copy-check reference (the training corpus's tokens, ``reference/``) ships beside it, so the
bulk job can reject copies of the corpus without the user preprocessing it first.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

PRETRAINED = "pretrained"  # the name users type: --model pretrained, --init-from pretrained
SHIPPED = "melody-lstm"  # the folder under musicgen/pretrained/
CHECKSUMS = "SHA256SUMS"


def pretrained_path() -> Path:
    """The shipped artifact's folder, checked against its SHA256SUMS (a damaged install is an error)."""
    folder = Path(str(importlib.resources.files(__name__) / SHIPPED))
    verify_checksums(folder)
    return folder


def verify_checksums(folder: Path) -> None:
    """Raise unless every file ``SHA256SUMS`` lists is there with that digest."""
    sums = folder / CHECKSUMS
    if not sums.is_file():
        raise FileNotFoundError(f"the shipped model is missing ({sums}); reinstall musicgen or pass --model")
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        path = folder / name.strip()
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"{path} does not match its checksum in {sums}: the shipped model is damaged")


def resolve_model(uri: str | None) -> str:
    """A model location: ``None`` or ``"pretrained"`` is the shipped model, anything else is kept."""
    if uri is None or uri == PRETRAINED:
        return str(pretrained_path())
    return uri


def write_checksums(folder: str | Path) -> None:
    """``SHA256SUMS`` of every file of a shipped artifact (what ``pretrained_path`` checks)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (CHECKSUMS, "MODEL_CARD.md"))
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}" for p in files]
    (folder / CHECKSUMS).write_text("\n".join(lines) + "\n")
