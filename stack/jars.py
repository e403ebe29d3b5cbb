"""Resolve the JVM dependencies of ``jvm/pom.xml`` into ``.cache/jars/<profile>``.

Maven keeps its repository under ``.cache/m2`` so that a second run (and the runner image
build) reuses every download. A profile directory is complete once its ``.complete``
marker exists and is newer than the pom (and than the sources of a module the profile
builds); an interrupted copy is redone.

The ``spark-connect`` profile is Delta's Connect server plug-in, which Maven Central does
not publish for the pinned Delta release: ``jvm/delta-connect`` builds it from Delta's own
sources and installs it into ``.cache/m2``, where the profile then resolves it.

    python -m stack.jars kafka spark spark-connect iceberg
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from stack.paths import CACHE, DELTA_CONNECT_MODULE, POM, jar_dir

PROFILES = ("kafka", "spark", "spark-connect", "iceberg")
# Profiles whose artifact is built here, by the Maven module in that directory.
BUILT_BY = {"spark-connect": DELTA_CONNECT_MODULE}


def ensure(profile: str) -> Path:
    """Return the jar directory of ``profile``, building and resolving it with Maven if needed.

    Raises ``subprocess.CalledProcessError`` when Maven fails (offline, bad pom, an
    artifact missing from the repository, a compile error in a built module); Maven's
    output is in its ``stdout``.
    """
    target = jar_dir(profile)
    marker = target / ".complete"
    if marker.exists() and marker.stat().st_mtime >= _newest_input(profile):
        return target
    # Start clean so that a version bump in the pom leaves no stale jar behind.
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if profile in BUILT_BY:
        _maven("-f", str(BUILT_BY[profile] / "pom.xml"), "install")
    _maven("-f", str(POM), "-P", profile, "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={target}")
    marker.touch()
    return target


def _maven(*args: str) -> None:
    subprocess.run(
        ["mvn", "--batch-mode", "--quiet", "-Dstyle.color=never",
         f"-Dmaven.repo.local={CACHE / 'm2'}", *args],
        check=True, capture_output=True, text=True,
    )


def _newest_input(profile: str) -> float:
    """The latest modification time among the files the profile's jars are made from."""
    times = [POM.stat().st_mtime]
    module = BUILT_BY.get(profile)
    if module:
        times += [path.stat().st_mtime for path in module.rglob("*")
                  if path.is_file() and "target" not in path.relative_to(module).parts]
    return max(times)


def main(argv: list[str]) -> int:
    for profile in argv or PROFILES:
        if profile not in PROFILES:
            print(f"unknown jar profile {profile!r}; known: {', '.join(PROFILES)}", file=sys.stderr)
            return 2
        try:
            path = ensure(profile)
        except subprocess.CalledProcessError as error:
            print(f"{profile}: Maven failed (exit {error.returncode}):\n"
                  f"{error.stdout}{error.stderr}", file=sys.stderr)
            return 1
        print(f"{profile}: {len(list(path.glob('*.jar')))} jars in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
