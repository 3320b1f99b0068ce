"""The emission protocol's decisions (processor.core.emission), on times passed in: no clock, no sleep."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processor.core.emission import (
    CLAIM_LEASE_S,
    CLOCK_SKEW_S,
    FIRST_PAUSE_S,
    GIVE_UP_AFTER_LEASES,
    MAX_PAUSE_S,
    ClaimResult,
    Next,
    PutWindow,
    after_claim,
    backoff,
)

PUT_MAX_S = 10.0


def test_a_claim_s_answer_decides_the_next_step() -> None:
    def step(result: ClaimResult, waited: float = 0.0) -> Next:
        return after_claim(result, now=1000.0 + waited, waiting_since=1000.0, lease_s=CLAIM_LEASE_S)

    assert step(ClaimResult.CLAIMED) is Next.EMIT
    assert step(ClaimResult.DONE) is Next.STOP
    assert step(ClaimResult.BUSY) is Next.WAIT
    # Another holder's claim lapses within a lease; ten leases of BUSY is a claim never released.
    assert step(ClaimResult.BUSY, GIVE_UP_AFTER_LEASES * CLAIM_LEASE_S) is Next.WAIT
    assert step(ClaimResult.BUSY, GIVE_UP_AFTER_LEASES * CLAIM_LEASE_S + 0.1) is Next.GIVE_UP
    # A claim won or found done decides at once, however long the wait was.
    assert step(ClaimResult.CLAIMED, 10_000.0) is Next.EMIT
    assert step(ClaimResult.DONE, 10_000.0) is Next.STOP


def test_puts_start_only_while_the_claim_is_safely_ours() -> None:
    window = PutWindow(claimed=500.0, lease_s=60.0, put_max_s=PUT_MAX_S)
    assert window.deadline == 500.0 + 60.0 - PUT_MAX_S - CLOCK_SKEW_S
    assert window.may_put(500.0)
    assert window.may_put(window.deadline - 0.001)
    assert not window.may_put(window.deadline)
    assert window.pause(500.0, 0.2) == 0.2
    assert abs(window.pause(window.deadline - 0.05, 0.2) - 0.05) < 1e-9
    assert window.pause(window.deadline + 3.0, 0.2) == 0.0
    assert window.stale_at == 561.0
    assert window.until_stale(520.0) == 41.0
    assert window.until_stale(600.0) == 0.0


def test_pauses_double_up_to_their_bound() -> None:
    pauses = [FIRST_PAUSE_S]
    for _ in range(8):
        pauses.append(backoff(pauses[-1]))
    assert pauses[:5] == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert pauses[5:] == [MAX_PAUSE_S] * 4


@given(
    claimed=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    lease=st.floats(min_value=25, max_value=600, allow_nan=False),
    started=st.floats(min_value=-100, max_value=700, allow_nan=False),
    skew=st.floats(min_value=0, max_value=CLOCK_SKEW_S, allow_nan=False),
)
def test_a_put_started_in_the_window_ends_before_anyone_may_take_over(
    claimed: float, lease: float, started: float, skew: float
) -> None:
    """The guarantee that makes a read-back after a takeover see every put of the holder: a
    put that may start ends (at worst ``put_max_s`` later) before the lease ends on any
    worker's clock, even one ``skew`` ahead."""
    window = PutWindow(claimed=claimed, lease_s=lease, put_max_s=PUT_MAX_S)
    now = claimed + started
    if window.may_put(now):
        assert now + PUT_MAX_S + skew <= claimed + lease
        # and a pause never carries a try past the deadline
        assert now + window.pause(now, 5.0) <= window.deadline
    assert window.stale_at > claimed + lease
