"""The experiments a server runs: the files of one folder, reread while it serves.

A file that changed is read again; one that no longer loads (bad YAML, a bad field, a prompt
that is not servable, an overlap with a running experiment) is refused with its line and
field, and the version loaded before it keeps running. A page is in at most one experiment:
two that could serve the same page kind at the same time are refused, the newer one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from composer.errors import UsageError
from composer.experiments.spec import Experiment, load_experiment
from composer.layout import PageKind

log = logging.getLogger("composer.experiments")

# What the service checks beyond the file itself (servable prompt, served model); raises
# UsageError naming the field.
Check = Callable[[Experiment], None]


@dataclass(frozen=True)
class Snapshot:
    """The experiments in force, the files refused, and the variants paused."""

    experiments: tuple[Experiment, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)  # file name -> why refused
    paused: dict[tuple[str, str], str] = field(default_factory=dict)  # (exp, variant) -> why

    def for_page(self, kind: PageKind, now: datetime) -> Experiment | None:
        for experiment in self.experiments:
            if kind in experiment.kinds and experiment.live(now):
                return experiment
        return None

    def get(self, name: str) -> Experiment | None:
        return next((e for e in self.experiments if e.name == name), None)


@dataclass(frozen=True)
class _FileState:
    stamp: tuple[int, int]  # (mtime_ns, size)
    experiment: Experiment | None  # the last good version read from this file
    error: str | None


class ExperimentRegistry:
    """``snapshot`` is replaced whole on each :meth:`reload` (readers never lock)."""

    def __init__(self, folder: Path, check: Check | None = None) -> None:
        self.folder = folder
        self.check = check
        self.snapshot = Snapshot()
        self._files: dict[str, _FileState] = {}

    def reload(self, paused: dict[tuple[str, str], str] | None = None) -> Snapshot:
        """Read the files that changed since the last call; ``paused`` replaces the paused
        variants (None keeps them)."""
        previous = {e.name for e in self.snapshot.experiments}
        files: dict[str, _FileState] = {}
        for path in self._yaml_files():
            try:
                stat = path.stat()
            except OSError:  # removed between the listing and now
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            known = self._files.get(path.name)
            if known is not None and known.stamp == stamp:
                files[path.name] = known
                continue
            try:
                experiment = load_experiment(path)
                if self.check is not None:
                    self.check(experiment)
            except Exception as exc:  # any file that does not load is that file's error
                message = str(exc) if isinstance(exc, UsageError) else f"{path}: {exc!r}"
                kept = known.experiment if known is not None else None
                files[path.name] = _FileState(stamp, kept, message)
                continue
            files[path.name] = _FileState(stamp, experiment, None)

        accepted: list[Experiment] = []
        errors: dict[str, str] = {}

        # What already ran is placed first, unchanged files before changed ones: neither a
        # new file nor an edit of a running one displaces a running experiment.
        def rank(name: str) -> tuple[bool, bool, str]:
            before = self._files.get(name)
            return (_name(files[name]) not in previous, before is not files[name], name)

        order = sorted(files, key=rank)
        for name in order:
            state = files[name]
            if state.error is not None:
                errors[name] = state.error
            candidate = state.experiment
            if candidate is None:
                continue
            clash = _clash(candidate, accepted)
            if clash is not None:
                errors[name] = f"{self.folder / name}: {clash}"
                before = self._files.get(name)
                candidate = before.experiment if before is not None else None
                if candidate is None or _clash(candidate, accepted) is not None:
                    continue
                files[name] = _FileState(state.stamp, candidate, errors[name])
            accepted.append(candidate)
        for name, error in errors.items():
            old = self._files.get(name)
            if old is None or old.error != error:
                log.error("experiment file refused", extra={"file": name, "error": error})
        self._files = files
        self.snapshot = Snapshot(
            tuple(sorted(accepted, key=lambda e: e.name)),
            errors,
            self.snapshot.paused if paused is None else dict(paused),
        )
        return self.snapshot

    def _yaml_files(self) -> Iterable[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.suffix in (".yaml", ".yml"))


def _name(state: _FileState) -> str | None:
    return state.experiment.name if state.experiment is not None else None


def _clash(experiment: Experiment, accepted: list[Experiment]) -> str | None:
    for other in accepted:
        if other.name == experiment.name:
            return f"field 'name': another file already runs an experiment named {other.name!r}"
        if experiment.overlaps(other):
            kinds = ", ".join(sorted(set(experiment.kinds) & set(other.kinds)))
            return (
                f"field 'kinds': overlaps experiment {other.name!r} ({kinds} pages at the "
                "same time); a page is in one experiment at a time: change kinds, start or "
                "stop"
            )
    return None
