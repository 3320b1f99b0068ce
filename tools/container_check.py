"""Run the built image for real against the embedded emulator: ``make image-run``.

Builds nothing itself (``make image-build`` does: buildah, on a base made with debootstrap).
It starts an embedded emulator, creates the resources, runs the image's default command
(``qm-ingest run`` under tini, as the image's non-root user) with podman on the host network,
publishes a simulated contact centre, and checks: every contact imported and emitted once,
``/healthz`` answers, the process runs as non-root, and SIGTERM stops it within the stop
timeout (docs/operations.md, "Container image").
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

IMAGE = os.environ.get("QM_IMAGE", "localhost/qm-ingest:dev")
STOP_TIMEOUT_S = 60  # processor/ops/stack.py ECS_STOP_TIMEOUT
#: What this machine kind needs (no Docker engine): runc with cgroupfs (crun refuses the
#: hybrid cgroup layout), and limits no higher than the session's own.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]


def main() -> int:  # noqa: PLR0915 - one scenario, step by step
    from processor.adapters.aws import AwsClients
    from processor.adapters.dynamodb.contacts import DynamoContactStore
    from processor.devtools.emulator import control
    from processor.devtools.publish_simulation import publish_scenario
    from processor.devtools.simulated_centre import build_scenario
    from processor.ops.bootstrap import bootstrap
    from processor.platform.settings import Settings
    from tests.conftest import unique_names
    from tests.contract.test_joiner import output_records

    state = Path(tempfile.mkdtemp(prefix="qm-image-"))
    port = control.free_port()
    endpoint = control.up(port, state).endpoint
    names = unique_names("img")
    health_port = control.free_port()
    env = {
        **names,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "QM_INSTANCE_ARN": "any",
        "QM_HEALTH_PORT": str(health_port),
        "QM_JOIN_WINDOW_SECONDS": "15",
        "QM_SWEEP_INTERVAL_SECONDS": "1",
        "QM_KCL_LEASE_ASSIGNMENT_MS": "1000",
        "QM_KCL_IDLE_BETWEEN_READS_MS": "250",
    }
    os.environ.update(env)
    settings = Settings()
    aws = AwsClients(settings)
    bootstrap(settings, aws)
    name = "qm-image-check-" + names["QM_APPLICATION_NAME"]
    limits = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1000:1000"]
    run = [*PODMAN, "run", "-d", "--name", name, "--network", "host", *limits]
    for key, value in env.items():
        run += ["-e", f"{key}={value}"]
    started = time.monotonic()
    subprocess.run([*run, IMAGE], check=True, capture_output=True)
    failures: list[str] = []
    try:
        scenario = build_scenario(
            seed=5, contacts=20, start=datetime(2026, 3, 5, 9, tzinfo=UTC), bucket=settings.recordings_bucket
        )
        publish_scenario(settings, aws, contacts=0, scenario=scenario)
        store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            final = {c.contact_id: c.doc for c in store.scan() if c.view.state.final}
            if all(final.get(k, {}).get("last_update") == v for k, v in scenario.expected.items()):
                break
            time.sleep(1)
        else:
            failures.append("not every contact was imported within 240 s")
        imported_s = time.monotonic() - started
        emitted = output_records(aws, settings.output_stream)
        versions = Counter((r["contact_id"], r["version"]) for r in emitted)
        if not versions or max(versions.values()) != 1:
            failures.append("a version was emitted twice (or none)")
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as response:
            health = response.status
        if health != 200:
            failures.append(f"/healthz answered {health}")
        top = subprocess.run(
            [*PODMAN, "top", name, "user", "pid", "args"], check=False, capture_output=True, text=True
        )
        users = {line.split()[0] for line in top.stdout.splitlines()[1:] if line.strip()}
        if not users or "root" in users or "0" in users:
            failures.append(f"runs as {users}")
        stop_started = time.monotonic()
        subprocess.run([*PODMAN, "stop", "-t", str(STOP_TIMEOUT_S), name], check=True, capture_output=True)
        stop_s = time.monotonic() - stop_started
        inspect = subprocess.run(
            [*PODMAN, "inspect", name, "--format", "{{.State.ExitCode}}"],
            check=False,
            capture_output=True,
            text=True,
        )
        exit_code = inspect.stdout.strip()
        if stop_s >= STOP_TIMEOUT_S or exit_code != "0":
            failures.append(f"SIGTERM: stopped in {stop_s:.1f}s with exit code {exit_code}")
        sys.stdout.write(
            f"image {IMAGE}: {len(scenario.expected)} contacts imported in {imported_s:.1f}s "
            f"(container start included), each version emitted once: {max(versions.values()) == 1}; "
            f"/healthz {health}; processes run as {sorted(users)}; SIGTERM to exit {stop_s:.1f}s "
            f"(exit code {exit_code})\n"
        )
    finally:
        logs = subprocess.run([*PODMAN, "logs", name], check=False, capture_output=True, text=True)
        (state / "container.log").write_text(logs.stdout + logs.stderr)
        subprocess.run([*PODMAN, "rm", "-f", name], check=False, capture_output=True)
        control.down(port, state)
    for failure in failures:
        sys.stdout.write(f"FAILED: {failure} (logs: {state / 'container.log'})\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
