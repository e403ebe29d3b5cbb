"""Fixtures shared by the unit tests."""

import pytest

#: The smallest dispatcher configuration file that loads.
MINIMAL_CONFIG = """
kafka: {bootstrap_servers: "k:9092"}
cts: {url: "http://cts"}
spec_store: s3://specs/cse
"""


@pytest.fixture
def config_path(tmp_path):
    """A dispatcher configuration file of :data:`MINIMAL_CONFIG`."""
    file = tmp_path / "dispatcher.yaml"
    file.write_text(MINIMAL_CONFIG)
    return file
