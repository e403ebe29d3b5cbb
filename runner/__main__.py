"""``python -m runner SPEC``: run one import and exit with its code.

SPEC is an ``s3://`` URI, a local file, or ``-`` for standard input (see
:mod:`runner.locations` for where the result goes). ``python -m runner --standby`` loads
first and then reads its arguments from standard input (:mod:`runner.standby`).

Exit codes (contracts.md section 4): 0 done, 64 unusable spec, 65 bad data (do not
retry), 70 the importer failed, 75 a temporary failure (retry), 69 a service it needs
(S3, the metastore, Spark) is unreachable (retried without spending an attempt). A result
that cannot be written makes the attempt exit 69 when S3 is unreachable, else 75.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
from typing import NoReturn

from common.faults import Fault, s3_fault
from contract.result import ExitCode
from runner import logs, standby
from runner.attempt import run_attempt
from runner.locations import open_location
from runner.logs import log


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == [standby.STANDBY]:
        standby.warm()
        try:
            argv = standby.arguments(sys.stdin)
        except standby.BadArguments as error:
            logs.configure(os.environ.get("CSEP_LOG_LEVEL", "INFO"))
            log.error("unusable arguments on standard input: %s", error)
            return ExitCode.BAD_SPEC
        if argv is None:  # let go unused
            return ExitCode.OK
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="s3://bucket/.../spec.yaml, a file path, or -")
    parser.add_argument("--result", metavar="NAME", type=_result_name,
                        help="the result file's name beside the spec (the dispatcher "
                             "chooses it per attempt); default: a new time-ordered name")
    parser.add_argument(standby.STANDBY, action="store_true",
                        help="alone: load first, then read the arguments as one line of "
                             "standard input, a JSON list")
    args = parser.parse_args(argv)
    if args.standby:
        parser.error(f"{standby.STANDBY} takes no other argument")
    logs.configure(os.environ.get("CSEP_LOG_LEVEL", "INFO"))
    logs.context.spec = args.spec
    try:
        location = open_location(args.spec, os.environ)
    except ValueError as error:
        log.error("unusable SPEC argument: %s", error)
        return ExitCode.BAD_SPEC
    result = run_attempt(location)
    try:
        where = location.write_result(result, args.result)
    except Exception as error:  # the attempt must not pass as done without its record
        code = (ExitCode.UNAVAILABLE if s3_fault(error) is Fault.INFRASTRUCTURE
                else ExitCode.TEMPORARY)
        log.error("could not write the result (%s: %s); exiting %d so it is retried",
                  type(error).__name__, error, code)
        return code
    log.info("result %s (exit %d) written to %s", result.status.value, result.exit_code, where)
    return result.exit_code


def _result_name(value: str) -> str:
    if not re.fullmatch(r"result-[A-Za-z0-9._-]+\.yaml", value):
        raise argparse.ArgumentTypeError(f"not a result file name: {value!r}")
    return value


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` once the logs are flushed, skipping the interpreter's teardown.

    By then the result is written and the Spark session stopped; what the teardown would
    add is pyspark's and gRPC's thread pools winding down, about 0.3 s of every import.
    Threads an importer left running and its ``atexit`` hooks end with the process."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run() -> NoReturn:
    """The ``csep-runner`` command: :func:`main`, then :func:`exit_now`."""
    exit_now(main())


if __name__ == "__main__":
    run()
