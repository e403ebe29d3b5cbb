import pytest

from tests.integration.dispatcher_lane import Lane


@pytest.fixture
def lane(stack, tmp_path):
    """A dispatcher with its own topics, group and spec prefix on the shared stack."""
    lane = Lane(stack, tmp_path)
    yield lane
    lane.close()


@pytest.fixture(scope="module")
def s3(stack):
    """An S3 client; the CTS output bucket ``cts-out`` exists."""
    stack.s3.create_bucket("cts-out")
    return stack.s3.client()


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
