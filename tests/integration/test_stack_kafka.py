"""The stack's Kafka is a real broker: consumer groups and manual commits work."""

import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def _consumer(bootstrap, group, topic):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", consumer_timeout_ms=15000)
    consumer.subscribe([topic])
    return consumer


def test_group_resumes_after_committed_offset(stack):
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    stack.kafka.create_topic(topic, partitions=1)
    producer = KafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all")
    for i in range(5):
        producer.send(topic, f"m{i}".encode())
    producer.flush()
    producer.close()

    first = _consumer(stack.kafka.bootstrap, "smoke-group", topic)
    seen = []
    for record in first:
        seen.append(record.value)
        if len(seen) == 2:
            break
    first.commit()  # commits the position after the second message
    first.close()
    assert seen == [b"m0", b"m1"]

    second = _consumer(stack.kafka.bootstrap, "smoke-group", topic)
    rest = []
    for record in second:
        rest.append(record.value)
        if len(rest) == 3:
            break
    committed = second.committed(TopicPartition(topic, 0))
    second.close()
    assert rest == [b"m2", b"m3", b"m4"]
    assert committed == 2
