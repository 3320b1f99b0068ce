"""An extraction waits for the open segment to seal the contact's end, however slowly the
encoder goes, and gives up only on one that has stopped sealing (simulated time, no sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from processor.desktop.agent import DesktopAgent
from processor.desktop.clock import SimulatedClock
from processor.desktop.segments import EncoderSettings

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)  # the sealed video starts here
NOW = T0 + timedelta(seconds=12)  # the extraction arrives after the contact's end, as it does


class SlowRecorder:
    """Seals a fragment every ``every`` seconds of the clock, each ``step`` seconds of video;
    after ``stuck_after`` seals it seals nothing more."""

    recording = True

    def __init__(self, clock: SimulatedClock, every: float, step: float, stuck_after: int = 10**6) -> None:
        self.clock, self.every, self.step, self.stuck_after = clock, every, step, stuck_after

    def current_flushed_until(self) -> datetime:
        seals = min(int((self.clock.now() - NOW).total_seconds() / self.every), self.stuck_after)
        return T0 + timedelta(seconds=seals * self.step)


def wait(recorder: SlowRecorder, clock: SimulatedClock, until: datetime) -> datetime:
    agent = SimpleNamespace(recorder=recorder, clock=clock, config=SimpleNamespace(encoder=EncoderSettings()))
    DesktopAgent._wait_for_flush(agent, until)  # type: ignore[arg-type]
    return recorder.current_flushed_until()


def test_a_slow_encoder_is_waited_for_until_the_contact_s_end_is_sealed() -> None:
    clock = SimulatedClock(NOW)
    # One second of video sealed every four seconds: 40 s to reach the end, far past one patience.
    recorder = SlowRecorder(clock, every=4.0, step=1.0)
    until = T0 + timedelta(seconds=10)
    assert wait(recorder, clock, until) >= until


def test_an_encoder_that_stopped_sealing_costs_a_few_keyframe_intervals() -> None:
    clock = SimulatedClock(NOW)
    recorder = SlowRecorder(clock, every=1.0, step=1.0, stuck_after=3)
    until = T0 + timedelta(seconds=30)
    assert wait(recorder, clock, until) < until
    assert clock.now() - NOW < timedelta(seconds=3 + 5 + 1)  # its last seal, then one patience
