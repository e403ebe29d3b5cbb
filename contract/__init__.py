"""The contract between the dispatcher and the runner, imported by both sides.

- :mod:`contract.spec`: the job spec, what the dispatcher hands the runner;
- :mod:`contract.result`: one attempt's result, the runner's exit codes and statuses;
- :mod:`contract.store`: where specs and results live in S3 (the audit trail).

Nothing here imports Kafka or Spark.
"""
