from __future__ import annotations

from processor.adapters.dynamodb.runtime_config import AcdConfiguration
from processor.console.forms import changes, parse_acd_form

ARN = "arn:aws:connect:eu-west-2:123456789012:instance/8f3c1d2e-5b6a-4c7d-9e8f-0a1b2c3d4e5f"


def test_valid_form_with_region_from_the_arn() -> None:
    current = AcdConfiguration(version=3)
    wanted, problems = parse_acd_form(
        {"instance_arn": ARN, "join_window_minutes": "45", "rte_enabled": "on", "version": "3"}, current
    )
    assert problems == {}
    assert wanted.region == "eu-west-2"
    assert (wanted.rte_enabled, wanted.include_acw, wanted.join_window_minutes) == (True, False, 45)
    assert changes(current, wanted) == {
        "instance_arn": [None, ARN],
        "region": [None, "eu-west-2"],
        "join_window_minutes": [30, 45],
        "include_acw": [True, False],
    }


def test_unticked_rte_box_turns_rte_off() -> None:
    wanted, problems = parse_acd_form({"join_window_minutes": "30", "include_acw": "on"}, AcdConfiguration())
    assert problems == {}
    assert wanted.rte_enabled is False


def test_problems_per_field() -> None:
    _, problems = parse_acd_form(
        {"instance_arn": "arn:aws:connect:instance", "region": "Mars", "join_window_minutes": "0"},
        AcdConfiguration(),
    )
    assert set(problems) == {"instance_arn", "region", "join_window_minutes"}
    _, problems = parse_acd_form(
        {"instance_arn": ARN, "region": "us-east-1", "join_window_minutes": "x"}, AcdConfiguration()
    )
    assert "eu-west-2" in problems["region"]
    assert "join_window_minutes" in problems
