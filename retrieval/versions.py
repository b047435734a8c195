"""Trained models as versions: each training writes a new folder beside the old ones, and one
small file names the version served.

``index/models/<version>/`` holds a version's MF factors (``mf/``), popularity
(``popularity.npz``), tuned fusion weights (``fusion.json``) and what it was trained on
(``info.json``). ``index/models/CURRENT`` names the served version. A version is written
under a temporary name and renamed into place complete; CURRENT is replaced by a rename too,
so a reader (a serving process polling it) sees the old version or the new one, never half.
A shop built before versions existed has its one model in ``index/`` itself: it is served
as version ``legacy`` until the next training.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import NotBuiltError

LEGACY = "legacy"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    path: Path
    created_at: float
    info: dict[str, Any]

    @property
    def mf_dir(self) -> Path:
        return self.path / "mf"

    @property
    def popularity_file(self) -> Path:
        return self.path / "popularity.npz"

    @property
    def fusion_file(self) -> Path:
        return self.path / "fusion.json"


class ModelVersions:
    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        self.root = index_dir / "models"
        self.pointer = self.root / "CURRENT"

    def all(self) -> list[ModelVersion]:
        """Every complete version, oldest first (the legacy model first, if there is one)."""
        found = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                info_file = path / "info.json"
                if path.is_dir() and not path.name.startswith(".") and info_file.is_file():
                    info = json.loads(info_file.read_text())
                    found.append(ModelVersion(path.name, path, float(info["created_at"]), info))
        found.sort(key=lambda v: (v.created_at, v.name))
        legacy = self._legacy()
        return [legacy, *found] if legacy else found

    def current_name(self) -> str | None:
        """The served version's name (cheap: one small file; what serving processes poll)."""
        try:
            return self.pointer.read_text().strip() or None
        except FileNotFoundError:
            return LEGACY if self._legacy() else None

    def current(self) -> ModelVersion:
        name = self.current_name()
        if name is None:
            raise NotBuiltError("no trained model; run `composer setup` or `composer train`")
        return self.get(name)

    def get(self, name: str) -> ModelVersion:
        for version in self.all():
            if version.name == name:
                return version
        known = ", ".join(v.name for v in self.all()) or "none"
        raise NotBuiltError(f"no model version '{name}'; known: {known}")

    def write(self, info: dict[str, Any], fill: Any) -> ModelVersion:
        """A new version: ``fill(folder)`` writes its files into a staging folder, which
        becomes the version when complete. Not served until :meth:`activate`."""
        self.root.mkdir(parents=True, exist_ok=True)
        created = time.time()
        # Two trainings at once each get a staging folder of their own, and the version's
        # name is taken by renaming into it: the second rename finds the name taken.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            fill(staging)
            info = {**info, "created_at": created}
            (staging / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True))
            stamp = time.strftime("v%Y%m%d-%H%M%S", time.gmtime(created))
            for n in range(1, 1000):
                name = stamp if n == 1 else f"{stamp}-{n}"
                try:
                    staging.rename(self.root / name)
                except OSError:  # taken (a non-empty folder of that name exists)
                    continue
                return ModelVersion(name, self.root / name, created, info)
            raise NotBuiltError(f"no free version name under {self.root}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def activate(self, name: str) -> ModelVersion:
        """Serve ``name`` from now on (processes polling CURRENT pick it up)."""
        version = self.get(name)
        self.root.mkdir(parents=True, exist_ok=True)
        # A temp file of its own (two activations at once do not share one), synced before
        # the rename, so CURRENT is never empty after a crash.
        fd, tmp = tempfile.mkstemp(prefix=".CURRENT-", dir=self.root)
        with os.fdopen(fd, "w") as handle:
            handle.write(version.name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.pointer)
        return version

    def previous(self) -> ModelVersion:
        """The version trained before the served one (what a rollback goes back to)."""
        versions = self.all()
        names = [v.name for v in versions]
        current = self.current_name()
        at = names.index(current) if current in names else len(names)
        if at == 0:
            raise NotBuiltError(f"no version before '{current}' to roll back to")
        return versions[at - 1]

    def _legacy(self) -> ModelVersion | None:
        if not (self.index_dir / "mf" / "mf.npz").is_file():
            return None
        manifest = self.index_dir / "manifest.json"
        info = json.loads(manifest.read_text()) if manifest.is_file() else {}
        created = float(info.get("built_at", 0.0))
        return ModelVersion(LEGACY, self.index_dir, created, {**info, "created_at": created})
