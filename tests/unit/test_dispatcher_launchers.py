"""Launchers start real processes; Docker is checked through a stand-in ``docker`` client
that records what it was given (there is no Docker engine here)."""

import json
import os
import sys
import textwrap
import time

import attrs
import pytest

from dispatcher.launchers import (
    DockerLauncher,
    LaunchError,
    LaunchRequest,
    SubprocessLauncher,
)

REQUEST = LaunchRequest(spec_uri="s3://specs/j1/t1/spec.yaml", job_id="j1", importer="checkm2",
                        attempt=2, timeout_seconds=None)


def wait(handle, limit=20.0):
    deadline = time.monotonic() + limit
    while (ended := handle.poll()) is None:
        assert time.monotonic() < deadline, "runner did not end"
        time.sleep(0.05)
    return ended


def alive(pid):
    """True unless the process is gone or a zombie (killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def script(body):
    return [sys.executable, "-c", textwrap.dedent(body)]


def test_subprocess_exit_code_and_output_tail():
    launcher = SubprocessLauncher(command=script("""
        import sys
        print("spec is", sys.argv[1], file=sys.stderr)
        sys.exit(65)
    """))
    ended = wait(launcher.launch(REQUEST))
    assert ended.exit_code == 65 and not ended.timed_out and ended.signal is None
    assert "spec is s3://specs/j1/t1/spec.yaml" in ended.stderr_tail


def test_subprocess_over_its_timeout_is_killed_with_its_children(tmp_path):
    marker = tmp_path / "child.pid"
    launcher = SubprocessLauncher(command=script(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(marker)!r}, "w").write(str(child.pid))
        time.sleep(60)
    """))
    handle = launcher.launch(attrs.evolve(REQUEST, timeout_seconds=1.0))
    ended = wait(handle)
    assert ended.timed_out and ended.exit_code is None and ended.signal == 9
    child = int(marker.read_text())
    time.sleep(0.2)
    assert not alive(child)


def test_subprocess_kill():
    handle = SubprocessLauncher(command=script("import time; time.sleep(60)")).launch(REQUEST)
    handle.kill()
    ended = wait(handle)
    assert ended.exit_code is None and ended.signal == 9 and not ended.timed_out


def test_docker_run_arguments_carry_no_secret():
    launcher = DockerLauncher("ghcr.io/kbase/runner:1", network="lake",
                              pass_env=("AWS_SECRET_ACCESS_KEY", "CSEP_S3_ENDPOINT_URL"),
                              extra_args=("--memory", "4g"))
    argv = launcher.command(REQUEST)
    name = argv[argv.index("--name") + 1]
    assert argv == ["docker", "run", "--rm", "--name", name, "--network", "lake",
                    "-e", "AWS_SECRET_ACCESS_KEY", "-e", "CSEP_S3_ENDPOINT_URL",
                    "--memory", "4g", "ghcr.io/kbase/runner:1", "s3://specs/j1/t1/spec.yaml"]
    assert name.startswith("csep-j1-2-")


def test_docker_client_gets_values_through_its_environment_and_is_killed_on_timeout(tmp_path):
    record = tmp_path / "calls.jsonl"
    fake = tmp_path / "docker"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys, time
        with open({str(record)!r}, "a") as f:
            f.write(json.dumps({{"argv": sys.argv[1:],
                                "secret": os.environ.get("AWS_SECRET_ACCESS_KEY")}}) + "\\n")
        if sys.argv[1] == "run":
            time.sleep(30)
    """))
    fake.chmod(0o755)
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    launcher = DockerLauncher("img", pass_env=("AWS_SECRET_ACCESS_KEY",), docker=str(fake),
                              environ=env)
    ended = wait(launcher.launch(LaunchRequest(spec_uri="s3://b/spec.yaml", job_id="j",
                                               importer="x", attempt=1, timeout_seconds=1)))
    assert ended.timed_out
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    run, kill = calls
    assert run["argv"][0] == "run" and "s3cr3t" not in json.dumps(run["argv"])
    assert run["secret"] == "s3cr3t"
    assert kill["argv"] == ["kill", run["argv"][run["argv"].index("--name") + 1]]


def test_docker_missing_client_is_a_launch_error():
    with pytest.raises(LaunchError, match="no-such-docker"):
        DockerLauncher("img", docker="no-such-docker").launch(REQUEST)
