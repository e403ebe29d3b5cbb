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


def ends(pid, limit=20.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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
    assert ends(int(marker.read_text()))


def test_subprocess_kill():
    handle = SubprocessLauncher(command=script("import time; time.sleep(60)")).launch(REQUEST)
    handle.kill()
    ended = wait(handle)
    assert ended.exit_code is None and ended.signal == 9 and not ended.timed_out


def test_subprocess_runner_gets_only_the_allowed_environment(tmp_path):
    dump = tmp_path / "env.json"
    environ = {"PATH": os.environ["PATH"], "AWS_SECRET_ACCESS_KEY": "s3-secret-value",
               "CSEP_S3_ENDPOINT_URL": "http://s3", "CSEP_METASTORE_PASSWORD": "pg-password",
               "LC_ALL": "C.UTF-8", "CSEP_CTS_TOKEN": "cts-admin-token",
               "CSEP_KAFKA__BOOTSTRAP_SERVERS": "kafka:9092", "UNRELATED": "x"}
    launcher = SubprocessLauncher(command=script(f"""
        import json, os
        open({str(dump)!r}, "w").write(json.dumps(dict(os.environ)))
    """), environ=environ)
    assert wait(launcher.launch(REQUEST)).exit_code == 0
    seen = json.loads(dump.read_text())
    assert {k: v for k, v in seen.items() if k in environ} == {
        "PATH": os.environ["PATH"], "AWS_SECRET_ACCESS_KEY": "s3-secret-value",
        "CSEP_S3_ENDPOINT_URL": "http://s3", "CSEP_METASTORE_PASSWORD": "pg-password",
        "LC_ALL": "C.UTF-8"}
    assert "cts-admin-token" not in json.dumps(seen)


def test_subprocess_allowlist_is_a_setting():
    launcher = SubprocessLauncher(environ={"A_ONE": "1", "A_TWO": "2", "B": "3"},
                                  pass_env=("A_*",))
    assert launcher.environment() == {"A_ONE": "1", "A_TWO": "2"}


def test_subprocess_output_tail_has_the_runners_credentials_redacted():
    environ = {"PATH": os.environ["PATH"], "AWS_SECRET_ACCESS_KEY": "s3-secret-value"}
    launcher = SubprocessLauncher(command=script("""
        import os, sys
        print("connecting with", os.environ["AWS_SECRET_ACCESS_KEY"], file=sys.stderr)
        sys.exit(70)
    """), environ=environ)
    ended = wait(launcher.launch(REQUEST))
    assert ended.exit_code == 70
    assert "connecting with <redacted>" in ended.stderr_tail
    assert "s3-secret-value" not in ended.stderr_tail


# -- a runner on standby ------------------------------------------------------------------------

#: A stand-in runner: on ``--standby`` it records its pid and "loads" for ``delay`` seconds,
#: then takes its arguments from one line of standard input, as ``python -m runner`` does.
STANDBY_RUNNER = """
    import json, os, sys, time
    log = {log!r}
    args = sys.argv[1:]
    if args == ["--standby"]:
        open(log, "a").write(f"standby {{os.getpid()}}\\n")
        time.sleep({delay})
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        args = json.loads(line)
    open(log, "a").write(f"run {{os.getpid()}} {{json.dumps(args)}}\\n")
    print("ran with", args, file=sys.stderr)
    sys.exit({code})
"""


def standby_launcher(tmp_path, delay=0.0, code=0, body=STANDBY_RUNNER):
    log = tmp_path / "runners.log"
    launcher = SubprocessLauncher(command=script(body.format(log=str(log), delay=delay,
                                                             code=code)), standby=True)
    return launcher, log


def lines(log, count=1, timeout=20.0):
    """The log's lines, once there are at least ``count`` (each is one write)."""
    deadline = time.monotonic() + timeout
    while True:
        found = log.read_text().splitlines() if log.exists() else []
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_an_attempt_is_handed_to_the_runner_on_standby_and_a_new_one_waits(tmp_path):
    launcher, log = standby_launcher(tmp_path, code=65)
    try:
        [started] = lines(log)
        ended = wait(launcher.launch(attrs.evolve(REQUEST, result_name="result-a1.yaml")))
        assert ended.exit_code == 65 and not ended.timed_out
        assert "ran with ['s3://specs/j1/t1/spec.yaml', '--result', 'result-a1.yaml']" in (
            ended.stderr_tail)
        spare_pid = started.split()[1]
        # The attempt ran in the process started before it; a new one was started for
        # the next attempt.
        first, ran, second = lines(log, count=3)
        assert (first, ran) == (f"standby {spare_pid}",
                                f'run {spare_pid} ["s3://specs/j1/t1/spec.yaml", '
                                f'"--result", "result-a1.yaml"]')
        assert second.startswith("standby ") and second != first
    finally:
        launcher.close()


def test_an_attempts_timeout_starts_when_it_is_handed_over(tmp_path):
    launcher, log = standby_launcher(tmp_path)
    try:
        lines(log)
        time.sleep(1.5)  # longer on standby than the attempt's timeout
        ended = wait(launcher.launch(attrs.evolve(REQUEST, timeout_seconds=1.0)))
        assert ended.exit_code == 0 and not ended.timed_out
    finally:
        launcher.close()


def test_a_standby_runner_that_ended_is_replaced_and_the_attempt_starts_its_own(tmp_path):
    dead = STANDBY_RUNNER.replace(
        'if args == ["--standby"]:',
        'if args == ["--standby"]:\n        open(log, "a").write(f"ended {{os.getpid()}}\\n")'
        '\n        sys.exit(3)')
    launcher, log = standby_launcher(tmp_path, code=0, body=dead)
    try:
        [gave_up] = lines(log)
        assert ends(int(gave_up.split()[1]))  # the standby runner has ended
        ended = wait(launcher.launch(REQUEST))
        assert ended.exit_code == 0
        runs = [line.split(" ", 2) for line in lines(log) if line.startswith("run ")]
        standby = {line.split()[1] for line in lines(log) if line.startswith("ended ")}
        assert [args for _, _, args in runs] == ['["s3://specs/j1/t1/spec.yaml"]']
        assert runs[0][1] not in standby
    finally:
        launcher.close()


def test_closing_the_launcher_ends_the_runner_on_standby(tmp_path):
    launcher, log = standby_launcher(tmp_path, delay=60)
    [started] = lines(log)
    pid = int(started.split()[1])
    assert alive(pid)
    launcher.close()
    assert not alive(pid)
    assert [line for line in lines(log) if line.startswith("run ")] == []


def test_without_standby_no_runner_is_started_ahead(tmp_path):
    log = tmp_path / "runners.log"
    launcher = SubprocessLauncher(command=script(STANDBY_RUNNER.format(
        log=str(log), delay=0, code=0)))
    time.sleep(0.3)
    assert not log.exists()
    assert wait(launcher.launch(REQUEST)).exit_code == 0
    assert [line.split()[0] for line in lines(log)] == ["run"]


# -- Docker, through a stand-in client --------------------------------------------------------

FAKE_DOCKER = """\
#!{python}
# A stand-in docker client: records its argv and environment, answers from {state}.
import json, os, sys, time
state = json.load(open({state!r}))
with open({record!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:],
                        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY")}}) + "\\n")
args = sys.argv[1:]
if args[:2] == ["container", "inspect"]:
    if state.get("inspect_sleep"):
        time.sleep(state["inspect_sleep"])
    if state.get("daemon_down"):
        print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
              "Is the docker daemon running?", file=sys.stderr)
        sys.exit(1)
    found = state.get("containers", {{}}).get(args[-1])
    if found is None:
        print("Error: No such object: " + args[-1], file=sys.stderr)
        sys.exit(1)
    print(found)
    sys.exit(0)
if args[0] == "logs":
    print(state.get("logs", ""))
    sys.exit(0)
if args[0] in ("run", "attach", "start"):
    print(state.get("output", ""), file=sys.stderr)
    time.sleep(state.get("sleep", 0))
    sys.exit(state.get("exit", 0))
sys.exit(0)
"""


class FakeDocker:
    def __init__(self, tmp_path, **state):
        self.record = tmp_path / "calls.jsonl"
        self.state_file = tmp_path / "state.json"
        self.path = tmp_path / "docker"
        self.set(**state)
        self.path.write_text(FAKE_DOCKER.format(python=sys.executable, state=str(self.state_file),
                                                record=str(self.record)))
        self.path.chmod(0o755)

    def set(self, **state):
        self.state_file.write_text(json.dumps(state))

    def calls(self):
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def launcher(self, **kwargs):
        env = {**os.environ, "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
        return DockerLauncher("img", pass_env=("AWS_SECRET_ACCESS_KEY",), docker=str(self.path),
                              environ=env, **kwargs)


def test_docker_run_arguments_carry_no_secret():
    launcher = DockerLauncher("ghcr.io/kbase/runner:1", network="lake",
                              pass_env=("AWS_SECRET_ACCESS_KEY", "CSEP_S3_ENDPOINT_URL"),
                              extra_args=("--memory", "4g"))
    argv = launcher.command(REQUEST)
    name = argv[argv.index("--name") + 1]
    assert argv == ["docker", "run", "--rm", "--name", name, "--network", "lake",
                    "-e", "AWS_SECRET_ACCESS_KEY", "-e", "CSEP_S3_ENDPOINT_URL",
                    "--memory", "4g", "ghcr.io/kbase/runner:1", "s3://specs/j1/t1/spec.yaml"]


def test_docker_container_names_follow_spec_and_attempt_not_the_process():
    name = DockerLauncher.container_name(REQUEST)
    assert name.startswith("csep-j1-") and name.endswith("-a2")
    # Another dispatcher process (its PID is 1 in a container too) names it the same.
    assert name == DockerLauncher.container_name(attrs.evolve(REQUEST))
    assert str(os.getpid()) not in name.split("-")
    assert DockerLauncher.container_name(attrs.evolve(REQUEST, attempt=3)) != name
    assert DockerLauncher.container_name(
        attrs.evolve(REQUEST, spec_uri="s3://specs/j1/t2/spec.yaml")) != name
    odd = DockerLauncher.container_name(attrs.evolve(REQUEST, job_id="ü/" + "x" * 100))
    assert len(odd) < 64 and odd.replace("-", "").replace(".", "").replace("_", "").isalnum()


def test_docker_client_gets_values_through_its_environment_and_is_killed_on_timeout(tmp_path):
    docker = FakeDocker(tmp_path, sleep=30)
    ended = wait(docker.launcher().launch(LaunchRequest(
        spec_uri="s3://b/spec.yaml", job_id="j", importer="x", attempt=1, timeout_seconds=1)))
    assert ended.timed_out
    inspect, run, kill = docker.calls()
    name = run["argv"][run["argv"].index("--name") + 1]
    assert inspect["argv"][:2] == ["container", "inspect"] and inspect["argv"][-1] == name
    assert run["argv"][0] == "run" and "s3cr3t-value" not in json.dumps(run["argv"])
    assert run["secret"] == "s3cr3t-value"
    assert kill["argv"] == ["kill", name]


def test_docker_adopts_the_running_container_of_the_same_attempt(tmp_path):
    name = DockerLauncher.container_name(REQUEST)
    docker = FakeDocker(tmp_path, containers={name: "running 0"}, output="runner log", exit=65)
    ended = wait(docker.launcher().launch(REQUEST))
    assert ended.exit_code == 65 and ended.infrastructure is None
    assert "runner log" in ended.stderr_tail
    argvs = [c["argv"] for c in docker.calls()]
    assert argvs[1] == ["attach", "--no-stdin", "--sig-proxy=false", name]
    assert not any(a[0] == "run" for a in argvs)


def test_docker_starts_a_container_its_predecessor_created_but_never_started(tmp_path):
    name = DockerLauncher.container_name(REQUEST)
    docker = FakeDocker(tmp_path, containers={name: "created 0"})
    assert wait(docker.launcher().launch(REQUEST)).exit_code == 0
    assert [c["argv"] for c in docker.calls()][1] == ["start", "--attach", name]


def test_docker_reads_the_end_of_a_container_that_exited_meanwhile(tmp_path):
    name = DockerLauncher.container_name(REQUEST)
    docker = FakeDocker(tmp_path, containers={name: "exited 75"},
                        logs="temporary failure s3cr3t-value")
    ended = wait(docker.launcher().launch(REQUEST))
    assert ended.exit_code == 75
    assert ended.stderr_tail.strip() == "temporary failure <redacted>"
    argvs = [c["argv"] for c in docker.calls()]
    assert argvs[1:] == [["logs", "--tail", "200", name], ["rm", "--force", name]]


def test_docker_exit_125_is_an_infrastructure_failure_not_an_attempt(tmp_path):
    docker = FakeDocker(tmp_path, exit=125, output=(
        "Unable to find image 'img:latest' locally\ndocker: Error response from daemon: "
        "pull access denied for img, repository does not exist"))
    ended = wait(docker.launcher().launch(REQUEST))
    assert ended.exit_code is None and ended.infrastructure == "docker"
    assert "pull access denied" in ended.stderr_tail


def test_docker_daemon_down_is_a_launch_error(tmp_path):
    docker = FakeDocker(tmp_path, daemon_down=True)
    with pytest.raises(LaunchError, match="Cannot connect to the Docker daemon"):
        docker.launcher().launch(REQUEST)
    assert [c["argv"][0] for c in docker.calls()] == ["container"]


def test_docker_calls_have_a_deadline(tmp_path):
    docker = FakeDocker(tmp_path, inspect_sleep=30)
    started = time.monotonic()
    with pytest.raises(LaunchError, match="did not answer within 0.5s"):
        docker.launcher(call_timeout=0.5).launch(REQUEST)
    assert time.monotonic() - started < 10


def test_docker_missing_client_is_a_launch_error():
    with pytest.raises(LaunchError, match="no-such-docker"):
        DockerLauncher("img", docker="no-such-docker").launch(REQUEST)
