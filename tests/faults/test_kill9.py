"""kill -9: of the whole service, of ``qm-ingest run`` alone, of a KCL daemon, of a record
processor, and of processes that kill themselves at chosen points (before, during and after
writes and checkpoints, between a contact's write and its emission, before a queue message
is deleted). After each one the service is restarted (or restarts what died by itself);
in the end the audit finds nothing lost and nothing emitted twice."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from processor.adapters.contacts import DynamoContactStore
from tests.faults.harness import (
    SERVICE_ENV,
    Figures,
    assert_clean,
    cmdline,
    contact_centre,
    delivered,
    expectation,
    judge,
    phases,
    publish,
    service_processes,
    wait_audit_ok,
    wait_caught_up,
    wait_for,
)
from tests.helpers import ServiceProcess, descendants

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

CTR_WORKER = "processor.adapters.kcl.ctr_worker"
DAEMON = "MultiLangDaemon"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its parent has not reaped it yet).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killing_run_alone_takes_its_daemons_and_processors_with_it(
    bootstrapped, aws, tmp_path: Path, services: list[ServiceProcess], record_figures
) -> None:
    """``qm-ingest run`` killed on its own must not leave KCL daemons behind: they would keep
    holding (and working) leases under the worker id that the restarted service takes back."""
    started_at = time.monotonic()
    settings = bootstrapped
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    centre = contact_centre(81, 60, settings.recordings_bucket)
    first, second = phases(centre, 2)
    log = tmp_path / "service.log"
    service = ServiceProcess(log, SERVICE_ENV).start()
    services.append(service)
    publish(aws, settings.ctr_stream, first)
    wait_caught_up(store, delivered(first), time.monotonic(), 150)
    assert service.proc is not None
    children = descendants(service.proc.pid)
    daemons = [pid for pid in children if DAEMON in cmdline(pid)]
    workers = [pid for pid in children if CTR_WORKER in cmdline(pid)]
    # Two daemons (CTRs, agent events), one record processor per CTR shard.
    assert len(daemons) == 2 and len(workers) == 2

    os.kill(service.proc.pid, signal.SIGKILL)
    service.proc.wait()
    killed = time.monotonic()
    wait_for(lambda: not any(alive(pid) for pid in daemons + workers), 10, "daemons and processors to die")

    restart = ServiceProcess(log, SERVICE_ENV).start()
    services.append(restart)
    publish(aws, settings.ctr_stream, second)
    recovery = wait_caught_up(store, delivered(first + second), killed, 150)
    expect = expectation(centre)
    wait_audit_ok(settings, aws, expect, 90)
    restart.stop()
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    record_figures(
        Figures(
            "kill -9 of `qm-ingest run` alone",
            report,
            [recovery],
            "daemons and record processors die with it (parent-death signal)",
            time.monotonic() - started_at,
        )
    )


__all__ = ["service_processes"]
