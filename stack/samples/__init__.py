"""The sample event set of the local stack: a CheckM2 run and its quality_report.tsv.

This directory is an event set (:mod:`stack.replay`): ``checkm2.json`` is the CTS job
document, ``checkm2/quality_report.tsv`` its output. :func:`checkm2_job` stages it (under
another job id and user if asked) the way ``python -m stack replay`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

from stack.replay import load_set, stage
from stack.state import StackState

HERE = Path(__file__).resolve().parent
[CHECKM2] = load_set(HERE)
REPORT = CHECKM2.files[0].read_text()


def checkm2_job(stack, job_id: str = CHECKM2.job_id, user: str = CHECKM2.doc["user"]) -> dict:
    """Upload the sample report for ``job_id`` (with the CRC64/NVME checksum the CTS would
    record) and register its job document with the CTS double; return the document."""
    [staged] = stage(StackState.of(stack), [CHECKM2.renamed(job_id, user)])
    return staged.doc


def completion_event(doc: dict) -> bytes:
    """The CTS message announcing the job's (last) completion."""
    last = [t for t in doc["transition_times"] if t["state"] == "complete"][-1]
    return json.dumps({"job_id": doc["id"], "state": "complete", "time": last["time"],
                       "trans_id": last["trans_id"]}).encode()


def report_genomes() -> list[str]:
    return [line.split("\t", 1)[0] for line in REPORT.splitlines()[1:]]
