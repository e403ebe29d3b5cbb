"""Small pieces shared by the dispatcher and the runner (no Kafka, no Spark)."""
