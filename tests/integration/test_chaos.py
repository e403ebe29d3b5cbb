"""The chaos benchmark at the suite's size: kills, a broker restart and duplicate
announcements, with nothing lost, nothing doubled, nothing dead-lettered for an outage,
and an audit trail that tells the truth (benchmarks/chaos.py runs it at full size)."""

from benchmarks.chaos import Chaos, Sizes


def test_chaos_at_the_suite_s_size(stack, tmp_path):
    report = Chaos(stack, tmp_path, Sizes(events=60, kills=5, broker_restarts=1, s3_restarts=0,
                                          dispatchers=3, partitions=6, timeout_seconds=600))()
    assert report.events >= 60 and report.kills == 5 and report.broker_restarts == 1
    assert report.ok, "\n".join([report.line(), *report.problems[:20]])
    assert report.line().endswith(
        "lost 0, duplicate rows 0, dead-lettered for infrastructure 0, audit mismatches 0")
