"""How the simulator reads a call's parameters, for both clouds (pure)."""

from __future__ import annotations

import pytest

from app.simulator.params import json_object, strings, unflatten


def test_a_flat_query_comes_back_nested_in_number_order() -> None:
    tencent = "InstanceIds.1=ins-b&InstanceIds.0=ins-a&Filters.0.Name=zone&Filters.0.Values.0=z"
    assert unflatten(tencent) == {
        "InstanceIds": ["ins-a", "ins-b"],
        "Filters": [{"Name": "zone", "Values": ["z"]}],
    }
    jd = "pageSize=100&filters.1.name=instanceId&filters.1.values.1=i-abcdefgh12"
    assert unflatten(jd) == {
        "pageSize": "100",
        "filters": [{"name": "instanceId", "values": ["i-abcdefgh12"]}],
    }


@pytest.mark.parametrize(("query", "says"), [("a=1&a.b=2", "clashes"), ("0=x", "names")])
def test_a_query_that_has_no_shape_is_a_value_error(query: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        unflatten(query)


def test_a_body_is_a_json_object_or_nothing() -> None:
    assert json_object(b"") == {}
    assert json_object(b'{"InstanceIds": ["ins-a", 3]}') == {"InstanceIds": ["ins-a", 3]}
    with pytest.raises(ValueError, match="not JSON"):
        json_object(b"{")
    with pytest.raises(ValueError, match="JSON object"):
        json_object(b"[]")
    assert strings(["ins-a", 3]) == ["ins-a"] and strings("ins-a") == []
