"""The ``match`` conditions of an importer YAML, case by case on plain job data."""

from __future__ import annotations

import pytest
import yaml

from common.convert import StructureError, converter, structure
from registry.filters import JobFacts, Match, register

CONVERTER = register(converter())

JOB = JobFacts(user="alice", image_digest="sha256:4f0c1d",
               args=("--threads=4", '{"input_files": "$all"}'),
               outputs=("cts-data/job-1/quality_report.tsv", "cts-data/job-1/log.txt"))


def match(text: str) -> Match:
    return structure(yaml.safe_load(text), Match, CONVERTER)


@pytest.mark.parametrize("condition", [
    "user: alice",
    "user: [bob, ali*]",
    "image_digest: 'sha256:4f0c*'",
    "arg: '--threads=*'",
    "arg: ['--db', '--threads=4']",
    "arg: '*input_files*'",                      # a structured argument, as its JSON text
    "output: '*/quality_report.tsv'",
    "output: 'cts-data/*/log.txt'",
    "{user: alice, output: '*.tsv'}",             # every key of a condition holds
    "all_of: [{user: alice}, {arg: '--threads=*'}]",
    "any_of: [{user: bob}, {output: '*.tsv'}]",
    "not: {user: bob}",
    "not: {any_of: [{user: bob}, {arg: '--dry-run'}]}",
])
def test_a_job_meeting_the_condition_is_taken(condition):
    assert match(condition).refusal(JOB) is None


@pytest.mark.parametrize(("condition", "reason"), [
    ("user: [bob, 'team_*']", "match.user: 'alice' matches none of ['bob', 'team_*']"),
    ("user: Alice", "match.user: 'alice' matches none of ['Alice']"),  # case-sensitive
    ("image_digest: 'sha256:ffff'",
     "match.image_digest: 'sha256:4f0c1d' matches none of ['sha256:ffff']"),
    ("arg: '--dry-run'", "match.arg: no argument (of 2) matches any of ['--dry-run']"),
    ("arg: '--threads'", "match.arg: no argument (of 2) matches any of ['--threads']"),
    ("output: '*/checkm2.tsv'",
     "match.output: no output file (of 2) matches any of ['*/checkm2.tsv']"),
    ("{user: alice, output: '*.json'}",
     "match.output: no output file (of 2) matches any of ['*.json']"),
    ("all_of: [{user: alice}, {arg: '--db'}]",
     "match.all_of[1].arg: no argument (of 2) matches any of ['--db']"),
    ("any_of: [{user: bob}, {output: '*.json'}]",
     "match.any_of: none holds (match.any_of[0].user: 'alice' matches none of ['bob']; "
     "match.any_of[1].output: no output file (of 2) matches any of ['*.json'])"),
    ("not: {output: '*/quality_report.tsv'}",
     "match.not: the job meets {output=['*/quality_report.tsv']}"),
    ("any_of: [{not: {user: alice}}]",
     "match.any_of: none holds (match.any_of[0].not: the job meets {user=['alice']})"),
])
def test_a_job_failing_the_condition_is_refused_naming_the_failed_part(condition, reason):
    assert match(condition).refusal(JOB) == reason


def test_a_job_without_outputs_or_arguments_meets_no_output_or_arg_condition():
    bare = JobFacts(user="alice", image_digest="sha256:1")
    assert match("output: '*'").refusal(bare) == (
        "match.output: no output file (of 0) matches any of ['*']")
    assert match("not: {arg: '*'}").refusal(bare) is None


@pytest.mark.parametrize(("condition", "problem"), [
    ("{}", "a condition needs at least one of: user, image_digest, arg, output, size, all_of, "
           "any_of, not"),
    ("users: alice", "extra fields found (users)"),
    ("user: []", "user needs at least one non-empty pattern"),
    ("output: ['']", "output needs at least one non-empty pattern"),
    ("user: [alice, 3]", "user[1]: invalid value for type, expected str"),
    ("any_of: []", "any_of needs at least one condition"),
    ("any_of: [{user: 3}]", "any_of[0].user: invalid value for type"),
    ("all_of: [{user: a}, {nope: 1}]", "all_of[1]: extra fields found (nope)"),
    ("not: {not: {arg: {a: 1}}}", "not.not.arg: invalid value for type"),
    ("not: {}", "not: invalid value (a condition needs at least one of"),
])
def test_a_bad_condition_is_refused_naming_the_field(condition, problem):
    with pytest.raises(StructureError) as caught:
        match(condition)
    assert problem in str(caught.value)


def test_describe_shows_the_whole_condition():
    condition = match("{user: a, any_of: [{arg: x}, {not: {output: y}}]}")
    assert condition.describe() == "{user=['a'], any_of[{arg=['x']}, {not {output=['y']}}]}"


def test_size_bounds_are_inclusive_and_a_job_without_a_size_fails_them():
    obj = JobFacts(user="alice", image_digest="", outputs=("cdm-dataplane/raw/a.tsv",), size=100)
    for condition in ("size: {min: 100}", "size: {max: 100}", "size: {min: 1, max: 100}",
                      "{output: 'cdm-dataplane/raw/*', size: {max: 1000}}"):
        assert match(condition).refusal(obj) is None, condition
    assert match("size: {min: 101}").refusal(obj) == "match.size: 100 bytes, not within min 101"
    assert match("size: {max: 10}").refusal(JOB) == "match.size: no size, not within max 10"
    assert match("any_of: [{user: bob}, {size: {max: 9}}]").describe() == (
        "{any_of[{user=['bob']}, {size=[max 9]}]}")


def test_keys_used_walks_every_nested_condition():
    condition = match("{user: a, all_of: [{arg: x}], not: {any_of: [{size: {min: 1}}]}}")
    assert list(condition.keys_used()) == [
        ("match.user", "user"), ("match.all_of", "all_of"), ("match.all_of[0].arg", "arg"),
        ("match.not", "not"), ("match.not.any_of", "any_of"),
        ("match.not.any_of[0].size", "size")]
