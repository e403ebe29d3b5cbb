"""The local stack: real servers for tests, CI and the local run.

Kafka (KRaft), SeaweedFS S3, PostgreSQL (the Hive metastore database) and the CTS test
double, each bound to 127.0.0.1 on free ports with its own data directory, health-checked
before use and stopped when its owner stops (or dies). Spark is not a server here: the
runner starts it in-process through :mod:`runner.spark`, pointed at this stack by the
environment that :meth:`stack.local.LocalStack.runner_env` returns; optionally a Spark
Connect server (:mod:`stack.spark_connect`) and a Spark standalone cluster
(:mod:`stack.spark_cluster`) join them. The Kubernetes tests start a real Kubernetes API
server of their own (:mod:`stack.kube`).
"""
