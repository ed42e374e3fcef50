"""Fixed, versioned sets of evaluation files: numbered PNGs plus a ``manifest.json``.

Mask sets (`masks.write_mask_set`) and margin sets (`margins.write_margin_set`) share this life
cycle, so that a folder with a manifest is always a complete set:

1. `open_set`: a manifest already there must describe the same set (its identity: format,
   version and the generating arguments), unless ``overwrite``; returns the files it listed.
2. `begin_set`: make the folder and remove the old manifest (from here until step 4 the folder
   is not a set).
3. `write_file`: each file atomically, with its sha256.
4. `finish_set`: remove files of the old set that the new one does not have, then write the
   manifest atomically, last.

`read_manifest` is the reading side's common part (folder, JSON, format, keys, version) and
`check_listed_file` checks one manifest entry's file. Every problem is one `InputError` line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL

from ..errors import InputError
from ..utils.fs import atomic_write

MANIFEST = "manifest.json"


def open_set(out_dir, identity: dict[str, Any], what: str, overwrite: bool) -> list[str]:
    """Check that `out_dir` may receive the set `identity`; the file names its old manifest lists."""
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    old_files: list[str] = []
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
            old_files = [Path(e["file"]).name for e in old["files"]]
            same = all(old.get(k) == v for k, v in identity.items())
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            same = False
        if not same and not overwrite:
            raise InputError(f"{out}: already holds a different {what} ({MANIFEST}); choose another folder "
                             "or pass overwrite=True")
    elif out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    return old_files


def begin_set(out_dir) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)


def write_file(out_dir, index: int, data: bytes) -> dict[str, str]:
    """Write file `index` (``00000.png``, ...) atomically; its manifest fields file and sha256."""
    name = f"{index:05d}.png"
    with atomic_write(Path(out_dir) / name, "wb") as f:
        f.write(data)
    return {"file": name, "sha256": hashlib.sha256(data).hexdigest()}


def finish_set(out_dir, identity: dict[str, Any], entries: list[dict[str, Any]],
               old_files: Sequence[str]) -> dict[str, Any]:
    """Remove the old set's leftover files, write the manifest last; return it."""
    out = Path(out_dir)
    for name in sorted(set(old_files) - {e["file"] for e in entries}):
        (out / name).unlink(missing_ok=True)
    manifest = {
        **identity,
        # Other numpy/Pillow versions may draw other pixels; the versions say why if they do.
        "created_with": {"numpy": np.__version__, "pillow": PIL.__version__},
        "files": entries,
    }
    with atomic_write(out / MANIFEST, "w") as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(directory, *, fmt: str, version: int, keys: Sequence[str], what: str,
                  how_to_make: str, hints: dict[str, str] | None = None) -> tuple[dict[str, Any], Path]:
    """Load and check a set's manifest: the folder, the JSON, the format, the keys and the version.

    `hints` maps another set format to a sentence appended when that one is found instead.
    Returns the manifest and its path.
    """
    d = Path(directory)
    mp = d / MANIFEST
    if not d.is_dir():
        raise InputError(f"{d}: no such {what} folder")
    if not mp.is_file():
        raise InputError(f"{d}: not a {what} (no {MANIFEST}; {how_to_make})")
    try:
        manifest = json.loads(mp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{mp}: corrupt manifest ({' '.join(str(exc).split())})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        hint = (hints or {}).get(found, "") if isinstance(found, str) else ""
        raise InputError(f"{mp}: not a {fmt} manifest{hint}")
    missing = [k for k in keys if k not in manifest]
    if missing:
        raise InputError(f"{mp}: corrupt manifest (missing {', '.join(missing)})")
    if manifest["version"] != version:
        raise InputError(f"{mp}: {what} version {manifest['version']!r} is not supported (this gancanvas "
                         f"reads version {version})")
    return manifest, mp


def check_listed_file(d: Path, mp: Path, i: int, entry: dict[str, Any], verify: bool) -> None:
    """Entry `i`'s file: a plain name inside the set folder, present, and (verify) unchanged."""
    name = entry["file"]
    if not isinstance(name, str) or Path(name).name != name:
        raise InputError(f"{mp}: corrupt manifest (entry {i}: bad file name {name!r})")
    fp = Path(d) / name
    if not fp.is_file():
        raise InputError(f"{fp}: listed in the manifest but missing")
    if verify and "sha256" in entry and hashlib.sha256(fp.read_bytes()).hexdigest() != entry["sha256"]:
        raise InputError(f"{fp}: content differs from the manifest (sha256 mismatch)")
