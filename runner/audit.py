"""``python -m runner.audit``: the audit trail of imports, read from the spec store.

    python -m runner.audit list [--job-id J] [--image I] [--status S]
    python -m runner.audit show SPEC_URI

``list`` prints one tab-separated line per spec: URI, job id, image (for an S3 event, its
object's ``s3://`` URI), attempts, and the status, exit code and end time of the latest
attempt (``pending`` before the first).
``--status`` filters on that latest status. ``show`` prints the spec and every result
file of it, oldest first, as YAML documents. The store is ``CSEP_SPEC_STORE`` (e.g.
``s3://cdm-lake/event-specs``); S3 settings as for the runner (``CSEP_S3_ENDPOINT_URL``,
``AWS_*``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping

import attrs

from common.s3 import S3Uri, s3_client
from contract import claim as claims
from contract.result import Status
from contract.spec import SpecError
from contract.store import SpecStore
from registry.images import image_name

PENDING = "pending"


@attrs.frozen
class SpecSummary:
    spec_uri: str
    job_id: str
    image: str
    attempts: int
    status: str
    exit_code: int | None
    ended_at: str | None

    def line(self) -> str:
        return "\t".join(str(v) if v is not None else "-" for v in attrs.astuple(self))


def summaries(store: SpecStore, job_id: str | None = None, image: str | None = None,
              status: str | None = None) -> Iterator[SpecSummary]:
    """The specs under ``store`` matching every given filter, in key order."""
    for uri in store.spec_uris(job_id):
        try:
            spec = store.get_spec(uri)
            job = spec.job.id
            # An S3 event's spec has no image: its object stands in that column.
            obj = spec.job.object
            spec_image = spec.job.image or (f"s3://{obj.file}" if obj else "(no image)")
        except SpecError:
            job, spec_image = "-", "(invalid spec)"
        if image and (spec_image.startswith("s3://")
                      or image_name(spec_image) != image_name(image)):
            continue
        attempts = store.results(uri)
        last = attempts[-1] if attempts else None
        summary = SpecSummary(uri, job, spec_image, len(attempts),
                              last.status.value if last else PENDING,
                              last.exit_code if last else None,
                              last.ended_at.isoformat() if last else None)
        if status and summary.status != status:
            continue
        yield summary


def show(store: SpecStore, spec_uri: str) -> str:
    """The spec, then each attempt's claim (who ran it, takeovers) followed by its result,
    then the rest (results of runs by hand, recorded spec drift), as one multi-document
    YAML stream."""
    files = [uri for uri in store.files(spec_uri) if uri != spec_uri]
    names = {uri.rsplit("/", 1)[-1]: uri for uri in files}
    parts = [f"# {spec_uri}\n{store.read_text(spec_uri)}"]
    shown = set()
    for uri in files:
        name = uri.rsplit("/", 1)[-1]
        if not name.startswith(claims.CLAIM_PREFIX):
            continue
        parts.append(f"# {uri}\n{store.read_text(uri)}")
        result = claims.result_name_for(int(name[len(claims.CLAIM_PREFIX):-len(".yaml")]))
        if result in names:
            parts.append(f"# {names[result]}\n{store.read_text(names[result])}")
            shown.add(names[result])
        else:
            parts.append(f"# {result}: not written yet (the attempt runs, or its dispatcher "
                         "stopped and the next one will take it over)\n")
        shown.add(uri)
    parts += [f"# {uri}\n{store.read_text(uri)}" for uri in files if uri not in shown]
    return "---\n".join(parts)


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="specs and their latest outcome")
    listing.add_argument("--job-id")
    listing.add_argument("--image", help="image name; a tag or digest is ignored")
    listing.add_argument("--status", choices=[PENDING, *(s.value for s in Status)])
    showing = commands.add_parser("show", help="a spec and all its results")
    showing.add_argument("spec_uri")
    args = parser.parse_args(argv)

    client = s3_client(environ)
    if args.command == "show":
        folder = S3Uri.parse(args.spec_uri).sibling("")
        print(show(SpecStore(str(folder), client), args.spec_uri), end="")
        return 0
    base = environ.get("CSEP_SPEC_STORE")
    if not base:
        parser.error("set CSEP_SPEC_STORE to the spec store, e.g. s3://cdm-lake/event-specs")
    for summary in summaries(SpecStore(base, client), args.job_id, args.image, args.status):
        print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
