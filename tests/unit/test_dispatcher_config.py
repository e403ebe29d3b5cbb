import pytest

from dispatcher.config import ConfigError, load
from tests.unit.conftest import MINIMAL_CONFIG


def test_file_defaults_and_environment_overrides(config_path):
    config = load(config_path, {"CSEP_KAFKA__TOPIC": "jobs", "CSEP_MAX_IN_FLIGHT": "8",
                                "CSEP_LAUNCHER__KIND": "docker",
                                "CSEP_LAUNCHER__DOCKER__PASS_ENV": "[A, B]",
                                "CSEP_CTS_TOKEN": "tok",
                                # a runner's variable: ignored
                                "CSEP_S3_ENDPOINT_URL": "http://s3"})
    assert config.kafka.topic == "jobs"
    assert config.kafka.dlq_topic == "cts-jobs-dlq"
    assert config.max_in_flight == 8
    assert config.launcher.settings.pass_env == ("A", "B")
    assert config.cts_token == "tok"
    assert "tok" not in repr(config)
    assert config.kafka.s3_topic is None
    assert load(config_path, {"CSEP_KAFKA__S3_TOPIC": "s3-events"}).kafka.s3_topic == "s3-events"


@pytest.mark.parametrize(("env", "message"), [
    ({"CSEP_MAX_IN_FLIGHT": "many"}, "max_in_flight: invalid value for type, expected int"),
    ({"CSEP_MAX_IN_FLIGHT": "0"}, "max_in_flight must be positive"),
    ({"CSEP_KAFKA__NOPE": "1"}, "kafka: extra fields found (nope)"),
    ({"CSEP_LAUNCHER__KIND": "ssh"}, "launcher.kind"),
    ({"CSEP_KAFKA__DLQ_TOPIC": "cts-jobs"}, "dlq_topic must differ"),
    ({"CSEP_SPEC_STORE": "/tmp/x"}, "spec_store must be an s3:// URI"),
    ({"CSEP_KAFKA__S3_TOPIC": "cts-jobs"}, "kafka.s3_topic must differ from kafka.topic"),
    ({"CSEP_KAFKA__S3_TOPIC": "cts-jobs-dlq"}, "kafka.s3_topic must differ"),
    ({"CSEP_KAFKA__GROUP_INSTANCE_ID": "pod-0"},
     "kafka.group_instance_id (static membership) needs kafka.assignor range or roundrobin"),
    # the launcher's: each kind's settings class, from the launcher registry
    ({"CSEP_LAUNCHER__SSH__HOST": "h"},
     "launcher: unexpected field(s) ssh (besides kind, a section per launcher kind: docker, "
     "kubernetes, subprocess)"),
    ({"CSEP_LAUNCHER__KIND": "docker", "CSEP_LAUNCHER__DOCKER__IMAGES": "x"},
     "launcher.docker: extra fields found (images)"),
    ({"CSEP_LAUNCHER__KIND": "docker", "CSEP_LAUNCHER__DOCKER__CALL_TIMEOUT_SECONDS": "0"},
     "launcher.docker: call_timeout_seconds must be positive"),
    ({"CSEP_LAUNCHER__KIND": "subprocess", "CSEP_LAUNCHER__SUBPROCESS__STANDBY": "maybe"},
     "launcher.subprocess.standby: invalid value for type, expected bool"),
    ({"CSEP_LAUNCHER__KIND": "kubernetes"}, "launcher.kubernetes.image: required field missing"),
    ({"CSEP_LAUNCHER__KIND": "[docker]"}, "launcher.kind: expected one of docker, kubernetes"),
    ({"CSEP_LAUNCHER": "docker"}, "launcher: expected a mapping"),
])
def test_a_bad_setting_is_one_line_naming_it(config_path, env, message):
    with pytest.raises(ConfigError) as error:
        load(config_path, env)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_static_membership_with_an_eager_assignor(config_path):
    config = load(config_path, {"CSEP_KAFKA__GROUP_INSTANCE_ID": "pod-0",
                                "CSEP_KAFKA__ASSIGNOR": "range"})
    assert (config.kafka.group_instance_id, config.kafka.assignor) == ("pod-0", "range")


def test_missing_required_settings_and_token_in_file(tmp_path):
    with pytest.raises(ConfigError, match="kafka: required field missing"):
        load(None, {"CSEP_CTS__URL": "http://c", "CSEP_SPEC_STORE": "s3://b/p"})
    file = tmp_path / "c.yaml"
    file.write_text(MINIMAL_CONFIG + "cts_token: secret\n")
    with pytest.raises(ConfigError, match="CSEP_CTS_TOKEN"):
        load(file, {})


def test_kubernetes_launcher_settings(config_path):
    config = load(config_path, {"CSEP_LAUNCHER__KIND": "kubernetes",
                                "CSEP_LAUNCHER__KUBERNETES__IMAGE": "registry/runner@sha256:abc",
                                "CSEP_LAUNCHER__KUBERNETES__CREDENTIALS_SECRET": "csep-creds"})
    assert config.launcher.kind == "kubernetes"
    assert config.launcher.settings.image == "registry/runner@sha256:abc"
    assert config.launcher.settings.credentials_secret == "csep-creds"
    with pytest.raises(ConfigError, match="launcher.kubernetes.image: required field missing"):
        load(config_path, {"CSEP_LAUNCHER__KIND": "kubernetes"})
    with pytest.raises(ConfigError, match="must not carry credentials"):
        load(config_path, {"CSEP_LAUNCHER__KIND": "kubernetes",
                           "CSEP_LAUNCHER__KUBERNETES__IMAGE": "r",
                           "CSEP_LAUNCHER__KUBERNETES__ENV": "{AWS_SECRET_ACCESS_KEY: x}"})


def test_the_compose_config_file_is_a_valid_dispatcher_config():
    from pathlib import Path

    compose_config = Path(__file__).resolve().parents[2] / "deploy" / "dispatcher.compose.yaml"
    config = load(compose_config, {"CSEP_CTS_TOKEN": "t"})
    assert config.launcher.kind == "docker"
    assert "AWS_SECRET_ACCESS_KEY" in config.launcher.settings.pass_env


def test_the_poll_interval_must_exceed_the_loop_s_turn_bound(config_path):
    config = load(config_path, {})
    assert config.kafka.max_poll_interval_ms / 1000 >= 2 * config.turn_bound_seconds
    with pytest.raises(ConfigError, match="max_poll_interval_ms .* twice the loop's turn bound"):
        load(config_path, {"CSEP_KAFKA__MAX_POLL_INTERVAL_MS": "30000"})
