"""The exactly-once emission protocol as decisions: claim, lease, put, read back. Pure.

Every final version of a contact goes onto the output stream once. The worker that writes a
version also writes its *emission claim* (a lease on the contacts item). Whoever completes a
pending emission (that worker, or another after a crash) follows these steps:

1. **Claim** the version. The store answers :class:`ClaimResult`; :func:`after_claim` says what
   comes next: stop (emitted, or replaced by a newer version), wait for another holder's
   fresh claim to lapse, give up (a claim never released), or emit.
2. **Note the attempt** (its wall-clock time) on the item. A previous attempt means a put may
   have landed: read the output stream back from that time before putting again.
3. **Put** only while the claim is safely ours: a :class:`PutWindow` closes
   ``put_max_s + skew_s`` before the lease ends, so any put still in flight has landed or
   failed when another worker may take over and read back. A put whose answer was lost is
   never repeated before a read-back says it is not there; pauses between tries double
   (:func:`backoff`) and never run past the window.
4. Past the window, **let the claim lapse** (:attr:`PutWindow.stale_at`) and start again
   at 1.

Times here are seconds on the caller's monotonic clock: the caller passes ``now``; nothing
here reads a clock or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: An emission claim older than this may be taken over.
CLAIM_LEASE_S = 60.0
#: How far two workers' wall clocks may disagree (the lease is compared on wall-clock times).
CLOCK_SKEW_S = 10.0
#: How often a worker asks again while another holds a fresh claim.
BUSY_PAUSE_S = 0.5
#: A claim held by others for this many leases is never going to be released (a bug, not
#: a slow worker: a holder stops putting before its lease ends).
GIVE_UP_AFTER_LEASES = 10
FIRST_PAUSE_S = 0.2
MAX_PAUSE_S = 5.0


class ClaimResult(StrEnum):
    CLAIMED = "claimed"
    DONE = "done"  # already emitted (or superseded by a newer version)
    BUSY = "busy"  # another worker holds a fresh claim


class Next(StrEnum):
    STOP = "stop"  # nothing left to emit
    WAIT = "wait"  # ask again after BUSY_PAUSE_S
    GIVE_UP = "give_up"  # the claim is never released: fail the batch, a person looks
    EMIT = "emit"  # the claim is ours: note the attempt, read back if needed, put


def after_claim(result: ClaimResult, *, now: float, waiting_since: float, lease_s: float) -> Next:
    """What follows a claim's answer, for a worker that began asking at ``waiting_since``."""
    if result is ClaimResult.DONE:
        return Next.STOP
    if result is ClaimResult.CLAIMED:
        return Next.EMIT
    if now - waiting_since > GIVE_UP_AFTER_LEASES * lease_s:
        return Next.GIVE_UP
    return Next.WAIT


@dataclass(frozen=True, slots=True)
class PutWindow:
    """When puts may start under a claim taken at ``claimed``."""

    claimed: float
    lease_s: float
    #: The longest one put can take (the output client's connect and read timeouts).
    put_max_s: float
    skew_s: float = CLOCK_SKEW_S

    @property
    def deadline(self) -> float:
        """No put starts at or after this: it could land after another worker took over."""
        return self.claimed + self.lease_s - self.put_max_s - self.skew_s

    def may_put(self, now: float) -> bool:
        return now < self.deadline

    def pause(self, now: float, wanted: float) -> float:
        """A pause of ``wanted`` seconds before the next try, cut short at the deadline."""
        return min(wanted, max(0.0, self.deadline - now))

    @property
    def stale_at(self) -> float:
        """When the claim has lapsed for every worker: a second past the lease."""
        return self.claimed + self.lease_s + 1.0

    def until_stale(self, now: float) -> float:
        return max(0.0, self.stale_at - now)


def backoff(pause: float) -> float:
    """The pause after ``pause``: doubled, at most MAX_PAUSE_S."""
    return min(pause * 2, MAX_PAUSE_S)
