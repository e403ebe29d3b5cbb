"""``python -m registry list|check [DIR ...]``: show or validate the importer registry.

The registry is the DIRs given (importer directories, importer package directories, or
``@builtin``/``@examples``), else ``CSEP_IMPORTER_DIRS``'s, as the runner reads it. Both
commands import every importer module (as the runner does; with ``--find``, only locate
it, as the dispatcher does); ``check`` exits 1 listing
every problem, ``list`` prints one line per importer: its image (an S3 importer: its
bucket, key patterns and user), name, module, file and settings.
"""

from __future__ import annotations

import argparse
import sys

from registry.registry import Registry, RegistryError, default_dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m registry", description=__doc__)
    parser.add_argument("command", choices=["list", "check"])
    parser.add_argument("dirs", nargs="*", metavar="DIR",
                        help="an importer directory or package (default: CSEP_IMPORTER_DIRS)")
    parser.add_argument("--find", action="store_true",
                        help="only locate each module, without importing it (as the "
                             "dispatcher does: its image has no pyspark)")
    args = parser.parse_args(argv)
    names = args.dirs or default_dirs()
    try:
        registry = Registry.load(names, check="find" if args.find else "import")
    except RegistryError as error:
        print(error, file=sys.stderr)
        return 1
    if args.command == "check":
        dirs = ", ".join(str(d) for d in names)
        print(f"{len(registry.entries)} importer(s) OK in {dirs}")
        return 0
    for entry in registry.entries:
        s = entry.settings
        routes = entry.image if entry.s3 is None else entry.s3.describe()
        print(f"{routes}\t{entry.name}\t{entry.py_module}\t{entry.source}\t"
              f"timeout={s.timeout_seconds} max_attempts={s.max_attempts} "
              f"max_concurrent={s.max_concurrent} executor_cores={s.executor_cores}"
              + (f" match={entry.match.describe()}" if entry.match else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
