"""The dispatcher as a command: what it imports, and how it refuses a bad setting."""

import json
import subprocess
import sys

from stack.local import subprocess_env


def _imported(code: str, packages: tuple[str, ...]) -> list[str]:
    """The modules of ``packages`` that running ``code`` in a fresh interpreter imports."""
    probe = (f"import json, sys; {code}; print(json.dumps(sorted(m for m in sys.modules"
             f" if m.split('.')[0] in {packages!r})))")
    done = subprocess.run([sys.executable, "-c", probe], env=subprocess_env({}),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_dispatcher_never_imports_pyspark_the_runner_or_the_kubernetes_client():
    code = ("import dispatcher.__main__, dispatcher.loop, registry, contract.store;"
            "from dispatcher import config; from registry import Registry;"
            "Registry.load(check='find')")
    assert _imported(code, ("pyspark", "delta", "runner", "kubernetes")) == []


def test_a_bad_setting_is_one_line_and_exit_78(tmp_path):
    config = tmp_path / "dispatcher.yaml"
    config.write_text("kafka: {bootstrap_servers: 'k:1'}\ncts: {url: 'http://c'}\n"
                      "spec_store: s3://b/p\n")
    done = subprocess.run([sys.executable, "-m", "dispatcher", "--config", str(config)],
                          env=subprocess_env({"CSEP_MAX_IN_FLIGHT": "lots"}),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 78
    assert done.stderr.strip().splitlines() == [
        "dispatcher: invalid configuration: max_in_flight: invalid value for type, expected int"]


def test_the_runner_never_imports_kafka_nor_the_dispatcher():
    code = "import runner.__main__, runner.attempt, runner.audit, runner.probes"
    assert _imported(code, ("kafka", "dispatcher")) == []
