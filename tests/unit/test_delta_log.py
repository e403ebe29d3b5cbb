"""Where a table's Delta log is on S3, and what SHOW TABLE EXTENDED says of a table."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.commits import table_details
from runner.delta_log import s3_log


@pytest.mark.parametrize("location, expected", [
    ("s3a://cdm-lake/warehouse/u_alice__checkm2.db/q",
     ("cdm-lake", "warehouse/u_alice__checkm2.db/q/_delta_log/")),
    ("s3://lake/t/", ("lake", "t/_delta_log/")),
    ("s3n://lake/a%20b", ("lake", "a%20b/_delta_log/")),
    ("s3a://lake", ("lake", "_delta_log/")),
    ("file:/tmp/warehouse/t", None),
    ("hdfs://nn/warehouse/t", None),
    ("s3a:///no-bucket", None),
    ("/tmp/warehouse/t", None),
])
def test_the_log_of_a_table_on_s3(location, expected):
    assert s3_log(location) == expected


@given(st.text())
def test_any_location_is_an_s3_log_or_none(location):
    found = s3_log(location)
    assert found is None or (found[0] and found[1].endswith("_delta_log/"))


def test_table_details_are_the_information_lines():
    information = ("Catalog: spark_catalog\nDatabase: db\nTable: t\nType: MANAGED\n"
                   "Provider: delta\nLocation: s3a://lake/warehouse/db.db/t\n"
                   "Table Properties: [a=b: c]\nLocation: second\nno separator\n")
    details = table_details(information)
    assert details["Provider"] == "delta"
    assert details["Location"] == "s3a://lake/warehouse/db.db/t"
    assert details["Table Properties"] == "[a=b: c]"
    assert "no separator" not in details


@given(st.text())
def test_table_details_take_any_text(information):
    assert all(isinstance(v, str) for v in table_details(information).values())
