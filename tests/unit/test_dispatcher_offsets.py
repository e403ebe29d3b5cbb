from dispatcher.offsets import OffsetTracker


def test_commit_point_stops_at_the_first_unfinished_offset():
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.start("p0", offset)
    for offset in (1, 2, 4):
        tracker.finish("p0", offset)
    assert tracker.commit_point("p0") == 0
    tracker.finish("p0", 0)
    assert tracker.commit_point("p0") == 3
    tracker.finish("p0", 3)
    assert tracker.commit_point("p0") == 5


def test_partitions_are_independent_and_moves_are_reported_once():
    tracker = OffsetTracker()
    tracker.start("slow", 10)
    tracker.start("fast", 0)
    tracker.start("fast", 1)
    tracker.finish("fast", 0)
    tracker.finish("fast", 1)
    assert tracker.to_commit() == {"fast": 2}  # "slow" has nothing new to acknowledge
    tracker.committed({"fast": 2})
    assert tracker.to_commit() == {}
    tracker.finish("slow", 10)
    assert tracker.to_commit() == {"slow": 11}


def test_gaps_in_offsets_do_not_hold_the_commit():
    tracker = OffsetTracker()
    tracker.start("p", 3)
    tracker.start("p", 7)  # 4..6 were compacted away or were transaction markers
    tracker.finish("p", 3)
    assert tracker.commit_point("p") == 7
    tracker.finish("p", 7)
    assert tracker.commit_point("p") == 8


def test_seen_recognises_redeliveries_and_forget_drops_partitions():
    tracker = OffsetTracker()
    tracker.start("p", 0)
    tracker.start("p", 1)
    tracker.finish("p", 0)
    assert tracker.seen("p", 0) and tracker.seen("p", 1) and not tracker.seen("p", 2)
    assert tracker.commit_point("p") == 1
    tracker.forget(["p"])
    assert not tracker.seen("p", 0)
    assert tracker.commit_point("p") is None
    assert tracker.partitions() == set()


def test_a_poll_s_offsets_started_at_once_are_tracked_as_one_by_one():
    at_once, one_by_one = OffsetTracker(), OffsetTracker()
    at_once.start_all("p", [5, 6, 9])  # a gap, as compaction leaves
    at_once.start_all("p", [])
    for offset in (5, 6, 9):
        one_by_one.start("p", offset)
    for tracker in (at_once, one_by_one):
        tracker.finish("p", 6)
    assert at_once.commit_point("p") == one_by_one.commit_point("p") == 5
    assert at_once.next_offset("p") == one_by_one.next_offset("p") == 10
    assert at_once.span("p") == one_by_one.span("p")
    at_once.finish("p", 5)
    assert at_once.commit_point("p") == 9 and at_once.next_offset("q") is None


def test_a_partition_s_commit_key_may_be_its_plain_tuple():
    # Intake finishes an offset under (topic, partition): the TopicPartition's key.
    from kafka import TopicPartition

    tracker = OffsetTracker()
    tracker.start_all(TopicPartition("t", 0), [0, 1])
    tracker.finish(("t", 0), 0)
    assert tracker.to_commit() == {TopicPartition("t", 0): 1}
