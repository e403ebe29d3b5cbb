"""The attempt ledger: specs, attempt claims and results in S3, as the dispatcher uses them.

The spec of an event is written once (a conditional put) and never replaced: a redelivery,
a replay or a duplicate announcement reads the spec that is there, and where what it
would write now differs (the registry's ``importer_meta`` changed, say), the difference
is recorded beside it (``drift-<hash>.yaml``) and logged, not written over.

Each attempt is claimed before its runner starts (:mod:`contract.claim`), so two
dispatchers holding copies of one completion never run it twice at once, and its result
file is chosen then. Reading the claims and results tells how many attempts the event
has spent, which survives restarts and rebalances. Attempts that ended on an
infrastructure failure or a write conflict, or that a stopped dispatcher left behind, are
recorded but not spent (:func:`contract.result.counts_as_attempt`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import yaml

from common.faults import calling
from common.s3 import S3Uri
from contract import claim as claims
from contract import result as results
from contract import spec as specs
from contract.store import DRIFT_PREFIX, SpecStore
from dispatcher.clock import SYSTEM_CLOCK, Clock


def now() -> datetime:
    return SYSTEM_CLOCK.now()


#: This dispatcher process, as named in the claims it makes.
OWNER = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


@attrs.frozen
class Claimed:
    """A claim as read, with the version (ETag) a takeover or a renewal must match."""

    claim: claims.AttemptClaim
    etag: str
    uri: str


@attrs.frozen
class Attempts:
    """What the claims and results of one spec say."""

    last_attempt: int = 0                       # the highest attempt number claimed
    spent: int = 0                              # results that count against max_attempts
    first_started: datetime | None = None       # of the first spent attempt
    latest: results.RunResult | None = None     # the latest readable result
    open: Claimed | None = None                 # a claimed attempt without a result yet
    #: Attempts that lost every commit race (``write_conflict``): not spent, but they pace
    #: the next one; and when the first of them started.
    conflicts: int = 0
    first_conflict_started: datetime | None = None
    #: The latest result, when it is a verdict about the event (bad data, a bad spec)
    #: that a run of the same spec would give again.
    refusal: results.RunResult | None = None

    @property
    def succeeded(self) -> bool:
        return self.latest is not None and self.latest.status is results.Status.SUCCEEDED


class AttemptLedger:
    def __init__(self, store: SpecStore, lease_seconds: float = 60.0,
                 owner: str = OWNER, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.lease = timedelta(seconds=lease_seconds)
        self.owner = owner
        #: The time written in claims and results (a test's clock, in unit tests).
        self.clock = clock

    # -- the spec -------------------------------------------------------------------------

    def write_spec(self, spec: specs.JobSpec) -> tuple[str, dict[str, Any]]:
        """Write the spec once; return its URI and how the stored spec differs from
        ``spec`` beyond the event's coordinates (empty when it is the same; a difference
        is recorded beside the spec). Raises ServiceFailure (s3)."""
        with calling("s3", "writing the spec"):
            uri, existing = self.store.put_spec_once(spec)
            if existing is None:
                return uri, {}
            drift = _drift(existing, spec)
            if drift:
                text = yaml.safe_dump({"observed_at": self.clock.now().isoformat(),
                                       "differences": drift},
                                      sort_keys=False, allow_unicode=True)
                digest = hashlib.sha256(yaml.safe_dump(drift).encode()).hexdigest()[:16]
                self.store.write_text_if_absent(
                    str(S3Uri.parse(uri).sibling(f"{DRIFT_PREFIX}{digest}.yaml")), text)
            return uri, drift

    # -- attempts -------------------------------------------------------------------------

    def attempts(self, spec_uri: str, since: datetime | None = None) -> Attempts:
        """The attempts of ``spec_uri``; only results that ended after ``since`` count,
        when given (a DLQ replay starts a fresh count). Raises ServiceFailure (s3)."""
        with calling("s3", "reading the attempts"):
            claim_uris = self.store.files(spec_uri, claims.CLAIM_PREFIX)
            result_uris = self.store.result_uris(spec_uri)
            read = sorted(((uri, self._read_result(uri)) for uri in result_uris),
                          key=lambda item: _ended(item[1]))
            last = _attempt_number(claim_uris[-1]) if claim_uris else 0
            named = {uri.rsplit("/", 1)[-1] for uri in result_uris}
            open_claim = None
            if last and claims.result_name_for(last) not in named:
                open_claim = self._read_claim(claim_uris[-1])
        current = [r for _, r in read if since is None or r is None or r.ended_at > since]
        counted = [r for r in current if results.counts_as_attempt(r)]
        conflicts = [r for r in current
                     if r is not None and r.status is results.Status.WRITE_CONFLICT]
        readable = [r for _, r in read if r is not None]
        first = next((r for r in counted if r is not None), None)
        latest = readable[-1] if readable else None
        return Attempts(
            last_attempt=last, spent=len(counted),
            first_started=first.started_at if first else None, latest=latest,
            open=open_claim, conflicts=len(conflicts),
            first_conflict_started=conflicts[0].started_at if conflicts else None,
            refusal=latest if latest is not None and latest.status in results.REFUSALS
            and latest in current else None)

    def claim(self, spec_uri: str, attempt: int) -> claims.AttemptClaim | None:
        """Claim attempt ``attempt``; None when another dispatcher claimed it first."""
        at = self.clock.now()
        claim = claims.AttemptClaim(
            attempt=attempt, owner=self.owner, claimed_at=at, lease_until=at + self.lease,
            result_name=claims.result_name_for(attempt))
        with calling("s3", "claiming an attempt"):
            created = self.store.write_text_if_absent(self._claim_uri(spec_uri, attempt),
                                                      claims.to_yaml(claim))
        return claim if created else None

    def take_over(self, spec_uri: str, stale: Claimed) -> claims.AttemptClaim | None:
        """Take over an attempt whose owner's lease ran out; None if someone else did."""
        at = self.clock.now()
        claim = attrs.evolve(
            stale.claim, owner=self.owner, lease_until=at + self.lease,
            takeovers=(*stale.claim.takeovers, claims.Takeover(
                by=self.owner, at=at, previous_owner=stale.claim.owner)))
        with calling("s3", "taking over an attempt"):
            taken = self.store.replace_text_if_match(stale.uri, claims.to_yaml(claim),
                                                     stale.etag)
        return claim if taken else None

    def renew(self, spec_uri: str, claim: claims.AttemptClaim) -> claims.AttemptClaim | None:
        """Extend our lease; None if the claim is no longer ours (taken over)."""
        uri = self._claim_uri(spec_uri, claim.attempt)
        with calling("s3", "renewing an attempt's lease"):
            current = self._read_claim(uri)
            if current is None or current.claim.owner != self.owner:
                return None
            renewed = attrs.evolve(current.claim, lease_until=self.clock.now() + self.lease)
            ok = self.store.replace_text_if_match(uri, claims.to_yaml(renewed), current.etag)
        return renewed if ok else None

    def release(self, spec_uri: str, claim: claims.AttemptClaim) -> None:
        """End our lease now (the runner was stopped): the next owner takes the attempt
        over without waiting. Raises ServiceFailure (s3)."""
        uri = self._claim_uri(spec_uri, claim.attempt)
        with calling("s3", "releasing an attempt"):
            current = self._read_claim(uri)
            if current is not None and current.claim.owner == self.owner:
                ended = attrs.evolve(current.claim, lease_until=self.clock.now())
                self.store.replace_text_if_match(uri, claims.to_yaml(ended), current.etag)

    def result(self, spec_uri: str, claim: claims.AttemptClaim) -> results.RunResult | None:
        """The result of a claimed attempt, if written (an unreadable one: a placeholder)."""
        uri = str(S3Uri.parse(spec_uri).sibling(claim.result_name))
        with calling("s3", "reading a result"):
            if uri not in self.store.result_uris(spec_uri):
                return None
            return self._read_result(uri) or results.RunResult(
                spec_uri=spec_uri, job_id="", status=results.Status.FAILED, exit_code=70,
                started_at=claim.claimed_at, ended_at=self.clock.now(),
                message="the runner's result file is unreadable")

    def record(self, claim: claims.AttemptClaim, result: results.RunResult) -> bool:
        """Write the attempt's result on the runner's behalf, unless the runner wrote it
        meanwhile (False). Raises ServiceFailure (s3)."""
        uri = str(S3Uri.parse(result.spec_uri).sibling(claim.result_name))
        with calling("s3", "writing a result"):
            return self.store.write_text_if_absent(uri, results.to_yaml(result))

    # -- reading --------------------------------------------------------------------------

    def _claim_uri(self, spec_uri: str, attempt: int) -> str:
        return str(S3Uri.parse(spec_uri).sibling(claims.claim_name(attempt)))

    def _read_claim(self, uri: str) -> Claimed | None:
        try:
            text, etag = self.store.read_text_and_etag(uri)
            return Claimed(claims.from_yaml(text), etag, uri)
        except ValueError:
            return None  # unreadable: treated as expired, so it can be taken over

    def _read_result(self, uri: str) -> results.RunResult | None:
        # An unreadable result still counts as an attempt; it just tells nothing more.
        try:
            return results.from_yaml(self.store.read_text(uri))
        except ValueError:
            return None


def lease_expired(claimed: Claimed | None, at: datetime | None = None) -> bool:
    """Whether ``claimed`` (None: an unreadable claim) has no lease left at ``at``
    (default: now)."""
    return claimed is None or claimed.claim.lease_until <= (at or now())


def _attempt_number(uri: str) -> int:
    name = uri.rsplit("/", 1)[-1]
    try:
        return int(name.removeprefix(claims.CLAIM_PREFIX).removesuffix(".yaml"))
    except ValueError:
        return 0


def _ended(result: results.RunResult | None) -> datetime:
    return result.ended_at if result is not None else datetime.min.replace(tzinfo=timezone.utc)


def _drift(stored_text: str, spec: specs.JobSpec) -> dict[str, Any]:
    """Top-level parts of the stored spec that differ from ``spec``, event excluded (a
    duplicate announcement or a replay arrives at other coordinates)."""
    try:
        stored = specs.from_yaml(stored_text)
    except specs.SpecError as error:
        return {"stored_spec": f"unreadable: {error}"}
    drift = {}
    for field in ("job", "importer", "args", "version"):
        before, after = getattr(stored, field), getattr(spec, field)
        if before != after:
            drift[field] = {"stored": _plain(before), "now": _plain(after)}
    return drift


def _plain(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(specs.unstructure(value), allow_unicode=True))
