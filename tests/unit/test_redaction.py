"""Redaction of credentials: the values themselves, wherever they appear in text."""

from __future__ import annotations

import io
import json
import logging

from common.redaction import RedactingFilter, Redactor
from dispatcher.dlq import Failure, dead_letter

ENV = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "CSEP_METASTORE_PASSWORD": "pg-pass-word",
       "CSEP_CTS_TOKEN": "cts-token-123", "AWS_ACCESS_KEY_ID": "public-id", "HOME": "/root",
       "SHORT_PASSWORD": "pw"}


def test_secrets_of_the_environment_and_given_ones_are_redacted():
    redact = Redactor.from_env(ENV, extra=["explicit-secret"])
    assert redact("key s3cr3t-value and pg-pass-word, cts-token-123 explicit-secret in /root "
                  "by public-id with pw") == (
        "key <redacted> and <redacted>, <redacted> <redacted> in /root by public-id with pw")


def test_a_secret_containing_another_is_redacted_whole():
    redact = Redactor(["abcdef", "abcdef-longer"])
    assert redact("x abcdef-longer y abcdef") == "x <redacted> y <redacted>"


def _log_through_filter(record_args, **kwargs) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor.from_env(ENV)))
    from pythonjsonlogger.json import JsonFormatter
    handler.setFormatter(JsonFormatter("{levelname}{message}", style="{"))
    logger = logging.getLogger("test.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.error(*record_args, **kwargs)
    return json.loads(stream.getvalue())


def test_log_records_are_redacted_in_message_arguments_extra_and_traceback():
    try:
        raise RuntimeError("connect failed with password pg-pass-word")
    except RuntimeError:
        line = _log_through_filter(("runner said %s", "token cts-token-123"), exc_info=True,
                                   extra={"spec_uri": "s3://b/s3cr3t-value/spec.yaml"})
    text = json.dumps(line)
    assert "pg-pass-word" not in text and "cts-token-123" not in text
    assert "s3cr3t-value" not in text
    assert line["message"] == "runner said token <redacted>"
    assert "RuntimeError: connect failed with password <redacted>" in line["exc_info"]
    assert line["spec_uri"] == "s3://b/<redacted>/spec.yaml"


def test_a_dead_letter_carries_no_secret_in_its_value_or_headers():
    original = {"job_id": "a1", "state": "complete", "time": "t", "trans_id": "x"}
    letter = dead_letter(
        topic="cts-jobs", partition=0, offset=3, key=None, value=json.dumps(original).encode(),
        failure=Failure("runner exit 70: bad password pg-pass-word", "RunnerFailed",
                        "Traceback...\nValueError: s3cr3t-value", "s3://b/s/a1/x/spec.yaml", 1, 70),
        redact=Redactor.from_env(ENV))
    value = json.loads(letter.value)
    assert value["error_dlq"] == "runner exit 70: bad password <redacted>"
    assert value["error_dlq_trace"] == "Traceback...\nValueError: <redacted>"
    for _, header in letter.headers:
        assert b"pg-pass-word" not in header and b"s3cr3t-value" not in header
    assert dict(letter.headers)["__connect.errors.exception.message"] == (
        b"runner exit 70: bad password <redacted>")


def test_a_dead_letter_redacts_the_dispatchers_own_environment_by_default(monkeypatch):
    monkeypatch.setenv("CSEP_CTS_TOKEN", "the-dispatchers-token")
    letter = dead_letter(topic="t", partition=0, offset=0, key=None, value=b"{}",
                         failure=Failure("CTS said: bad token the-dispatchers-token", "X"))
    assert b"the-dispatchers-token" not in letter.value
    assert all(b"the-dispatchers-token" not in h for _, h in letter.headers)
