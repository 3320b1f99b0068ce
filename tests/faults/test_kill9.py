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

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.kinesis.put_records import put_records
from tests.faults.harness import (
    SERVICE_ENV,
    Figures,
    assert_clean,
    cmdline,
    contact_centre,
    delivered,
    expectation,
    judge,
    kcl_state,
    phases,
    publish,
    seeded,
    service_processes,
    wait_audit_ok,
    wait_caught_up,
    wait_for,
)
from tests.helpers import ServiceProcess, descendants

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

CTR_WORKER = "processor.entrypoints.ctr_worker"
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
            "daemons die with it (parent-death signal), record processors with their daemon (watchdog)",
            time.monotonic() - started_at,
        )
    )


# (what dies, how): a process killing itself at a fault point, or kill -9 from outside.
ROUNDS = [
    ("point", "before_write@{ctr}"),
    ("point", "after_quarantine"),
    ("point", "after_view_write"),
    ("point", "after_output_put"),
    ("point", "after_write@{ctr}"),
    ("point", "after_checkpoint@{ctr}"),
    ("point", "before_delete@sqs"),
    ("external", "processor"),
    ("external", "daemon"),
    ("external", "run"),
]


#: Points a process passes once per batch: the record processors' own, and the join's writes
#: and emission, which work a batch (or one recording notification's objects) at a time. A
#: second passage may never come in a round whose contacts arrive in one batch per shard.
BATCH_POINTS = ("before_write", "after_write", "after_checkpoint", "after_view_write", "after_output_put")


def poison(round_no: int) -> list[tuple[bytes, str]]:
    # One partition key: both land on the same shard (a fault point counts passages per process).
    return [(b"{broken json, round %d" % round_no, f"p{round_no}"), (b"[%d]" % round_no, f"p{round_no}")]


@pytest.mark.slow
def test_kill9_at_random_points_repeatedly(
    bootstrapped, aws, tmp_path: Path, *, services: list[ServiceProcess], record_figures
) -> None:
    """Every round: a process dies at a chosen point (or is killed from outside at a random
    moment); what died restarts (the service, or the daemon by itself); then, while the next
    part of the stream is being processed, the whole service is killed at a random moment and
    started again. The audit at the end is the verdict."""
    started_at = time.monotonic()
    settings = bootstrapped
    rng = seeded("kill9")
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    rounds = ROUNDS[:]
    rng.shuffle(rounds)
    centre = contact_centre(rng.randrange(1 << 30), 15 * len(rounds), settings.recordings_bucket)
    parts = phases(centre, 2 * len(rounds))
    log = tmp_path / "service.log"
    sent: list = []
    recoveries: list[float] = []
    tree_killed_at: float | None = None
    done: list[str] = []

    def diagnose() -> str:
        procs = []
        for service in services:
            if service.alive():
                assert service.proc is not None
                for pid in [service.proc.pid, *descendants(service.proc.pid)]:
                    try:
                        wchan = Path(f"/proc/{pid}/wchan").read_text()
                        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    except OSError:
                        continue
                    procs.append(f"{pid} {state} {wchan} {cmdline(pid)[:150]}")
        return kcl_state(aws, settings.application_name) + "\n" + "\n".join(procs)

    # The fault point is armed through a file, rewritten between rounds: a point armed from the
    # start could fire in `run` (its sweeper and queue consumers emit contacts too) before the
    # round begins.
    arming = tmp_path / "arming"
    arming.write_text("")
    env = {"QM_FAULT_KILL_AT": f"@{arming}"}

    def start() -> ServiceProcess:
        service = ServiceProcess(log, {**SERVICE_ENV, **env}).start()
        services.append(service)
        return service

    service = start()
    for number, (kind, template) in enumerate(rounds):
        if tree_killed_at is not None:
            service = start()
            recoveries.append(wait_caught_up(store, delivered(sent), tree_killed_at, 180, diagnose))
        what = template.format(ctr=settings.ctr_stream)
        marker = tmp_path / f"killed-{number}"
        if kind == "point":
            # Batch points pass once per batch, record points once per record: the n-th passage.
            count = 1 if what.split("@")[0] in BATCH_POINTS else rng.randint(1, 2)
            arming.write_text(f"{what}:{count} {marker}")
        part = parts[2 * number]
        put_records(aws.kinesis, settings.ctr_stream, poison(number))
        publish(aws, settings.ctr_stream, part)
        sent += part
        if kind == "point":
            wait_for(marker.exists, 120, f"a process to die at {what}")
            arming.write_text("")
            killed_at = time.monotonic() - (time.time() - marker.stat().st_mtime)
            pid = int(marker.read_text().split("pid=")[1])
            where = "run" if service.proc is not None and pid == service.proc.pid else "record processor"
            done.append(f"{what.split('@')[0]} in {where}")
        else:
            time.sleep(rng.uniform(0.5, 3.0))
            killed_at = time.monotonic()
            kill_from_outside(service, what, settings)
            done.append(f"kill -9 {what}")
        if not service.alive():
            service = start()  # `run` itself died: restart it (its daemons died with it)
        recoveries.append(wait_caught_up(store, delivered(sent), killed_at, 180, diagnose))

        # The whole service killed at a random moment of the next part, then restarted.
        part = parts[2 * number + 1]
        publish(aws, settings.ctr_stream, part)
        sent += part
        time.sleep(rng.uniform(0.2, 2.5))
        service.kill()
        tree_killed_at = time.monotonic()

    service = start()
    assert tree_killed_at is not None
    recoveries.append(wait_caught_up(store, delivered(sent), tree_killed_at, 180, diagnose))
    expect = expectation(
        centre, quarantined={"total": 2 * len(rounds), "by_source": {"kinesis": 2 * len(rounds)}}
    )
    wait_audit_ok(settings, aws, expect, 120)
    service.stop()
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    record_figures(
        Figures(
            f"kill -9, {2 * len(rounds)} times: {len(rounds)} chosen points or processes, "
            f"{len(rounds)} of the whole service",
            report,
            recoveries,
            "; ".join(done),
            time.monotonic() - started_at,
        )
    )


def kill_from_outside(service: ServiceProcess, what: str, settings) -> None:
    """kill -9 one process of the running service: a CTR record processor, the CTR daemon, or
    ``qm-ingest run`` alone (whose daemons and processors must then die with it)."""
    assert service.proc is not None
    proc = service.proc

    def victims() -> list[int]:
        if what == "processor":
            return service_processes(service, CTR_WORKER)[:1]
        if what == "daemon":
            return [
                pid
                for pid in service_processes(service, DAEMON)
                if f"/{settings.application_name}.properties" in cmdline(pid)
            ]
        return [proc.pid]

    # A service restarted a moment ago may not have spawned its record processors yet (it
    # caught up before the kill of the whole service already).
    victims_now: list[int] = wait_for(victims, 90, f"a {what} to kill")
    orphans = descendants(service.proc.pid) if what == "run" else []
    for pid in victims_now:
        os.kill(pid, signal.SIGKILL)
    if what == "run":
        service.proc.wait()
        wait_for(
            lambda: not any(alive(pid) for pid in orphans), 10, "the daemons and processors of `run` to die"
        )
