"""``python -m runner --standby``: load first, then take the arguments from standard input."""

import io
import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.result import ExitCode
from runner.standby import BadArguments, arguments


def standby(stdin: str) -> subprocess.CompletedProcess:
    # No Spark master, no S3 endpoint: loading needs neither, and the arguments decide.
    return subprocess.run([sys.executable, "-m", "runner", "--standby"], input=stdin,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "CSEP_LOG_LEVEL": "INFO"})


@given(st.lists(st.text()))
def test_the_arguments_are_one_json_line(args):
    assert arguments(io.StringIO(json.dumps(args) + "\n" + "not read\n")) == args


@pytest.mark.parametrize("line", ["s3://b/spec.yaml\n", '{"spec": "s3://b/s"}\n', "[1, 2]\n",
                                  '"s3://b/spec.yaml"\n', "[\"a\", null]\n"])
def test_anything_but_a_json_list_of_strings_is_refused(line):
    with pytest.raises(BadArguments):
        arguments(io.StringIO(line))


def test_the_end_of_input_is_no_arguments():
    assert arguments(io.StringIO("")) is None


def test_a_runner_let_go_on_standby_exits_0_having_run_nothing():
    done = standby("")
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout == "" and "spec" not in done.stderr


def test_a_runner_on_standby_refuses_unusable_arguments_as_a_bad_spec():
    done = standby("--result x\n")
    assert done.returncode == ExitCode.BAD_SPEC
    assert "unusable arguments on standard input: not JSON" in done.stderr


def test_the_arguments_read_are_checked_as_on_the_command_line():
    done = standby(json.dumps(["s3://b/spec.yaml", "--result", "../escape.yaml"]) + "\n")
    assert done.returncode == 2  # argparse's usage error
    assert "not a result file name" in done.stderr


def test_standby_takes_no_other_argument():
    done = subprocess.run([sys.executable, "-m", "runner", "--standby", "s3://b/spec.yaml"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "--standby takes no other argument" in done.stderr
