"""A single-node Apache Kafka broker in KRaft mode, from the jars of ``jvm/pom.xml``."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from stack import jars
from stack.process import ServerProcess, free_ports

_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={log_dir}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


class KafkaBroker:
    """Kafka on 127.0.0.1; ``bootstrap`` is the address clients connect to."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port, self.controller_port = free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._server: ServerProcess | None = None

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        classpath = f"{jars.ensure('kafka')}/*"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(_PROPERTIES.format(
            port=self.port, controller_port=self.controller_port, log_dir=self.data_dir / "logs"))
        java = ["java", "-Xms256m", "-Xmx768m", "-Djava.awt.headless=true", "-cp", classpath]
        if not (self.data_dir / "logs" / "meta.properties").exists():  # else: a restart
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            formatted = subprocess.run(
                # "--cluster-id=": a random id may start with "-", which a separate argument
                # would make look like an option (format then fails).
                [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(config)],
                capture_output=True, text=True)
            if formatted.returncode != 0:
                raise RuntimeError(
                    f"kafka: formatting {self.data_dir / 'logs'} failed (exit "
                    f"{formatted.returncode}):\n{(formatted.stdout + formatted.stderr)[-3000:]}")
        self._server = ServerProcess(
            "kafka", [*java, "kafka.Kafka", str(config)], self.data_dir / "kafka.log")
        self._server.wait_healthy(self._ready, timeout)
        return self

    def _ready(self) -> bool:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name`` with ``partitions`` partitions and wait until it has leaders."""
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
            admin.wait_for_topics([name], timeout_ms=30000)
        finally:
            admin.close()

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None

    def restart(self) -> KafkaBroker:
        """Stop and start again on the same ports, with the same topics and offsets."""
        self.stop()
        return self.start()
