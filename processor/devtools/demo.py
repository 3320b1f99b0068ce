"""``qm-ingest demo`` (``make demo``): the whole pipeline on a simulated contact centre.

1. the embedded emulator on 127.0.0.1:<port> (or the LocalStack already listening there),
2. ``bootstrap``, 3. ``qm-ingest run`` as a child process, 4. ``simulate``,
5. wait until every simulated contact is in QM at its newest version, 6. print them,
7. stop what it started. Safe to run twice in a row.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.devtools.emulator import control
from processor.devtools.publish_simulation import PublishedScenario, publish_scenario
from processor.devtools.simulated_centre import DEFAULT_INSTANCE_ARN
from processor.ops.bootstrap import bootstrap, wait_for_endpoint
from processor.ops.report import print_contacts
from processor.platform.exceptions import QmIngestError
from processor.platform.settings import Settings

#: KCL timings for a quick local start (the defaults suit production).
FAST_KCL = {
    "QM_KCL_LEASE_ASSIGNMENT_MS": "1000",
    "QM_KCL_SHARD_SYNC_MS": "5000",
    "QM_KCL_IDLE_BETWEEN_READS_MS": "250",
    "QM_KCL_PARENT_SHARD_POLL_MS": "1000",
    # A short join window, so that the demo also shows recordings that never arrive.
    "QM_JOIN_WINDOW_SECONDS": "20",
    "QM_SWEEP_INTERVAL_SECONDS": "2",
}
WAIT_SECONDS = 300


def run_demo(*, contacts: int, port: int, console_seconds: float | None = None) -> int:
    console = Console(stderr=True)
    state = Path(os.environ.get("QM_STATE_DIR", ".qm-local"))
    # Whatever already listens (a LocalStack, an emulator from `local up`) is used and left running.
    started_emulator = not control.port_open(port)
    status = control.up(port, state)
    console.print(f"[bold]emulator[/]: {status.describe()}")
    env = dict(os.environ)
    env["AWS_ENDPOINT_URL"] = status.endpoint
    defaults = {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        # The tenant check: the simulated contact centre's Connect instance.
        "QM_INSTANCE_ARN": DEFAULT_INSTANCE_ARN,
        **FAST_KCL,
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    # A free port for /metrics, unless one was asked for: 8080 may be taken on a workstation.
    env.setdefault("QM_HEALTH_PORT", str(control.free_port()))
    os.environ.update(env)
    settings = Settings()
    aws = AwsClients(settings)
    service: subprocess.Popen[bytes] | None = None
    log_path = state / "demo-service.log"
    try:
        wait_for_endpoint(aws)
        report = bootstrap(settings, aws)
        console.print(
            f"[bold]bootstrap[/]: {len(report.created)} created, {len(report.existing)} already there"
        )
        _ensure_server_key(settings, console)
        state.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log_file:
            service = subprocess.Popen(
                [sys.executable, "-m", "processor", "run"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        console.print(f"[bold]service[/]: qm-ingest run (pid {service.pid}), logs in {log_path}")
        health = f"http://127.0.0.1:{env['QM_HEALTH_PORT']}"
        console.print(f"[bold]health[/]: {health}/healthz, {health}/readyz, {health}/metrics")
        published = publish_scenario(settings, aws, contacts=contacts)
        console.print(
            f"[bold]simulate[/]: {len(published.expected)} contacts, {published.deliveries} CTR deliveries "
            f"(duplicates and updates included), {published.recordings} recordings, "
            f"{len(published.users)} QM users"
        )
        store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
        docs = _wait_for(store, published.expected, service, console, log_path)
        print_contacts(
            sorted(docs, key=lambda d: (d.get("connected_at") or "~", d["contact_id"])), show_numbers=True
        )
        states = Counter(str(d.get("join_state")) for d in docs)
        summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        console.print(
            f"[bold green]{len(docs)} contacts imported, each once, at its newest version[/] ({summary})."
        )
        _print_commands(settings, aws, published, console)
        from processor.console.demo_session import demo_console

        demo_console(settings, aws, lambda text: console.print(f"[bold]{text}[/]"), console_seconds)
        return 0
    finally:
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.kill()
        if started_emulator:
            control.down(port, state)
            console.print("[bold]emulator[/]: stopped")


def _wait_for(
    store: DynamoContactStore,
    expected: dict[str, str],
    service: subprocess.Popen[bytes],
    console: Console,
    log_path: Path,
) -> list[dict[str, object]]:
    deadline = time.monotonic() + WAIT_SECONDS
    done: dict[str, dict[str, object]] = {}
    last_report = 0.0
    while True:
        for contact_id, version in expected.items():
            if contact_id in done:
                continue
            stored = store.get(contact_id)
            if stored is not None and stored.last_update == version and stored.view.state.final:
                done[contact_id] = stored.doc
        if len(done) == len(expected):
            return list(done.values())
        if service.poll() is not None:
            raise QmIngestError(f"the service exited ({service.returncode}); see {log_path}")
        now = time.monotonic()
        if now > deadline:
            raise QmIngestError(
                f"only {len(done)}/{len(expected)} contacts imported after {WAIT_SECONDS}s; see {log_path}"
            )
        if now - last_report > 5:
            console.print(f"waiting for the KCL consumer: {len(done)}/{len(expected)} contacts imported")
            last_report = now
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(1)


def _ensure_server_key(settings: Settings, console: Console) -> None:
    """Extractions carry the server's public key: make one for the demo if there is none."""
    from processor.adapters.screen_keys import generate_server_key, private_key_path

    path = private_key_path(settings)
    if not path.exists():
        key = generate_server_key(path)
        console.print(f"[bold]screen key[/]: generated {path} (key id {key.key_id})")


def _print_commands(
    settings: Settings, aws: AwsClients, published: PublishedScenario, console: Console
) -> None:
    """The commands each configured agent's desktop was sent (start/stop from the agent
    event stream, an extraction per imported contact), from the commands table."""
    from datetime import UTC, datetime

    from processor.adapters.sqs.commands import CommandStore
    from processor.core.agent_queue import agent_queue_name
    from processor.ops.report import commands_table

    store = CommandStore(aws.dynamodb, settings.commands_table)
    configured = [u.username for u in published.users if u.screen_recording]
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    deadline = time.monotonic() + 90
    rows: list[tuple[str, str, dict[str, int]]] = []
    while True:
        rows = []
        for agent in configured:
            counts = Counter(r.type for r in store.of_agent(agent, epoch))
            rows.append((agent, agent_queue_name(agent), dict(counts)))
        # The agent-event consumer is a second KCL application: wait for its first batch.
        if all(r[2].get("start_recording") for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(2)
    Console(width=220).print(commands_table(rows))
