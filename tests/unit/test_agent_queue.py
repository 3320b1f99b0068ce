from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from processor.core.agent_queue import agent_queue_name

VALID = re.compile(r"^[A-Za-z0-9_-]{1,75}\.fifo$")


def test_readable_and_safe() -> None:
    name = agent_queue_name("chloé.o'neil@example.com")
    assert VALID.match(name)
    assert name.startswith("qm-agent-chloe_o_neil_example_com-")


@given(st.text(min_size=1, max_size=300))
def test_any_username_gives_a_valid_name(username: str) -> None:
    name = agent_queue_name(username)
    assert VALID.match(name) and len(name) <= 80
    assert agent_queue_name(username) == name  # stable


def test_names_stay_unique_when_sanitising_collides() -> None:
    names = {agent_queue_name(u) for u in ["a.b", "a@b", "a_b", "A.b", "a b", "ä.b", "a" * 200, "a" * 201]}
    assert len(names) == 8
