"""Resolve the JVM dependencies of ``jvm/pom.xml`` into ``.cache/jars/<profile>``.

Maven keeps its repository under ``.cache/m2`` so that a second run (and the runner image
build) reuses every download. A profile directory is complete once its ``.complete``
marker exists and is newer than the pom; an interrupted copy is redone.

    python -m stack.jars kafka spark [spark-connect]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from stack.paths import CACHE, POM, jar_dir

PROFILES = ("kafka", "spark", "spark-connect")
# What the local stack and the tests need; spark-connect is opt-in.
DEFAULT_PROFILES = ("kafka", "spark")


def ensure(profile: str) -> Path:
    """Return the jar directory of ``profile``, resolving it with Maven if needed.

    Raises ``subprocess.CalledProcessError`` when Maven fails (offline, bad pom, an
    artifact missing from the repository); Maven's output is in its ``stdout``.
    """
    target = jar_dir(profile)
    marker = target / ".complete"
    if marker.exists() and marker.stat().st_mtime >= POM.stat().st_mtime:
        return target
    # Start clean so that a version bump in the pom leaves no stale jar behind.
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    subprocess.run(
        [
            "mvn", "--batch-mode", "--quiet", "-Dstyle.color=never",
            "-f", str(POM), "-P", profile,
            f"-Dmaven.repo.local={CACHE / 'm2'}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={target}",
        ],
        check=True, capture_output=True, text=True,
    )
    marker.touch()
    return target


def main(argv: list[str]) -> int:
    for profile in argv or DEFAULT_PROFILES:
        if profile not in PROFILES:
            print(f"unknown jar profile {profile!r}; known: {', '.join(PROFILES)}", file=sys.stderr)
            return 2
        try:
            path = ensure(profile)
        except subprocess.CalledProcessError as error:
            print(f"{profile}: Maven failed (exit {error.returncode}):\n{error.stdout}{error.stderr}",
                  file=sys.stderr)
            return 1
        print(f"{profile}: {len(list(path.glob('*.jar')))} jars in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
