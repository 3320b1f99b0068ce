"""The container image and the LocalStack compose file, checked without a Docker engine.

* The Dockerfile is linted by hadolint and parsed by Docker's own parser (buildkit, through
  the ``dockerfile`` package); the properties the issue asks for are asserted on the parse.
* ``localstack/docker-compose.yml`` is validated against the compose-spec JSON Schema (the
  copy dclint ships) and linted by dclint.
* The compose settings, the init hook's defaults and :class:`Settings` agree.
* ``-m slow``: stage 1 of the image rebuilt in a fresh virtualenv (``make image-check``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import dockerfile
import orjson
import pytest
import yaml
from jsonschema import Draft7Validator

from processor.platform.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "localstack" / "docker-compose.yml"
HOOK = ROOT / "localstack" / "ready.d" / "10-qm-ingest-resources.sh"
TOOLS = ROOT / "tools" / "node_modules"
BIN = Path(sys.executable).parent


def stages() -> list[list[dockerfile.Command]]:
    out: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(command)
    return out


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multi_stage_slim_python_with_java() -> None:
    build, runtime = stages()
    args = {
        c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1]
        for c in dockerfile.parse_file(str(DOCKERFILE))
        if c.cmd == "ARG"
    }
    assert args["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    assert build[0].value == ("${PYTHON_IMAGE}", "AS", "build")
    assert runtime[0].value == ("${PYTHON_IMAGE}", "AS", "runtime")
    installs = " ".join(c.value[0] for c in runtime if c.cmd == "RUN")
    assert "openjdk-17-jre-headless" in installs and "tini" in installs
    assert "--no-install-recommends" in installs and "rm -rf /var/lib/apt/lists/*" in installs
    # Nothing is built in the runtime stage: the virtualenv (jars inside) comes from stage 1.
    assert "pip install" not in installs
    copies = [c for c in runtime if c.cmd == "COPY"]
    assert [(c.flags, c.value) for c in copies] == [(("--from=build",), ("/opt/qm-ingest", "/opt/qm-ingest"))]
    build_runs = " ".join(c.value[0] for c in build if c.cmd == "RUN")
    assert "pip install --no-deps --no-build-isolation ." in build_runs and "jars_dir" in build_runs, (
        "the build must prove the jars are there"
    )
    assert "pip install --require-hashes -r requirements.lock" in build_runs, "the image installs the lock"
    copied = [c.value for c in build if c.cmd == "COPY"]
    assert any("requirements.lock" in value for value in copied)


def test_the_image_installs_the_server_only() -> None:
    """qm-desktop and the development tools are removed from the copied tree before the project
    is installed, and the image's lock holds none of their libraries."""
    build, _ = stages()
    runs = [c.value[0] for c in build if c.cmd == "RUN"]
    install = next(r for r in runs if "pip install --no-deps --no-build-isolation ." in r)
    removal = "rm -rf processor/desktop processor/devtools"
    assert removal in install and install.index(removal) < install.index("--no-build-isolation ."), install
    locked = {
        line.split("==", 1)[0].lower() for line in (ROOT / "requirements.lock").read_text().splitlines()
    }
    assert not locked & {"av", "mss", "pillow", "moto"}, "desktop or emulator libraries in the image's lock"


def test_dockerfile_runs_as_non_root_with_healthcheck_and_signal_forwarding() -> None:
    runtime = stages()[-1]
    by_cmd = {c.cmd: c for c in runtime}
    user = by_cmd["USER"].value[0]
    assert user.split(":")[0] not in ("0", "root") and user.split(":")[0].isdigit()
    health = by_cmd["HEALTHCHECK"]
    assert health.value == ("CMD", "python", "-m", "processor.entrypoints.probe", "healthz")
    assert by_cmd["ENTRYPOINT"].json and by_cmd["ENTRYPOINT"].value == ("/usr/bin/tini", "--", "qm-ingest")
    assert by_cmd["CMD"].value == ("run",)
    assert by_cmd["STOPSIGNAL"].value == ("SIGTERM",)
    env = dict(zip(by_cmd["ENV"].value[::2], by_cmd["ENV"].value[1::2], strict=True))
    assert env["QM_HEALTH_HOST"] == "0.0.0.0"
    assert by_cmd["EXPOSE"].value == (env["QM_HEALTH_PORT"],)


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "**/node_modules", ".git", ".qm-local"} <= ignored


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_validates_against_the_compose_spec() -> None:
    schema = orjson.loads((TOOLS / "dclint" / "schemas" / "compose.schema.json").read_bytes())
    validator = Draft7Validator(schema)
    errors = sorted(validator.iter_errors(load_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # The schema is not vacuous: a misspelt key is rejected.
    broken = load_compose()
    broken["services"]["qm-ingest"]["depend_on"] = broken["services"]["qm-ingest"].pop("depends_on")
    assert any(True for _ in validator.iter_errors(broken))


def test_dclint_accepts_the_compose_file() -> None:
    node = shutil.which("node")
    assert node, "Node.js is required (make install)"
    done = subprocess.run(
        [node, str(TOOLS / "dclint" / "bin" / "dclint.cjs"), str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_wires_the_hook_the_service_and_the_auth_token() -> None:
    compose = load_compose()
    localstack = compose["services"]["localstack"]
    service = compose["services"]["qm-ingest"]
    assert "./ready.d:/etc/localstack/init/ready.d:ro" in localstack["volumes"]
    assert localstack["environment"]["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"
    assert localstack["image"].startswith("${LOCALSTACK_IMAGE:-localstack/localstack:")
    assert "/_localstack/init/ready" in " ".join(localstack["healthcheck"]["test"])
    assert service["depends_on"]["localstack"]["condition"] == "service_healthy"
    assert service["environment"]["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    assert (
        service["build"]["context"] == ".."
        and (COMPOSE.parent / service["build"]["context"] / "Dockerfile").is_file()
    )
    # Both containers see the same resource names.
    for key, value in compose["x-qm-settings"].items():
        assert localstack["environment"][key] == value
        assert service["environment"][key] == value


def hook_defaults() -> dict[str, str]:
    return dict(re.findall(r'"\$\{(QM_[A-Z_]+):-([^}]*)\}"', HOOK.read_text()))


def test_hook_compose_and_settings_agree_on_names_and_defaults() -> None:
    defaults = {env_name(name): field.default for name, field in Settings.model_fields.items()}
    hook = hook_defaults()
    assert hook, "the hook reads no QM_ variable"
    for variable, default in hook.items():
        assert str(defaults[variable]) == default, variable
    compose = load_compose()["x-qm-settings"]
    for variable, default in hook.items():
        assert compose[variable] == f"${{{variable}:-{default}}}", variable
    # Every resource name the service reads is created by the hook.
    names = {
        env_name(n) for n in Settings.model_fields if n.endswith(("_stream", "_table", "_bucket", "_queue"))
    }
    assert names <= set(hook), names - set(hook)


@pytest.mark.slow
def test_image_build_stage_in_a_virtualenv(tmp_path: Path) -> None:
    """What stage 1 does, on this machine: install the project (runtime dependencies only)
    into a fresh virtualenv; the KCL jars must be inside the installed package."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = str(venv / "bin" / "pip")
    # As stage 1 does: the hashed runtime lock (pip refuses any dependency it lacks), then
    # the project itself, built without isolation by the locked setuptools.
    lock = str(ROOT / "requirements.lock")
    subprocess.run([pip, "install", "--quiet", "--require-hashes", "-r", lock], check=True, timeout=900)
    subprocess.run(
        [pip, "install", "--quiet", "--no-deps", "--no-build-isolation", str(ROOT)], check=True, timeout=300
    )
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from processor.adapters.kcl.daemon import jars_dir;"
            " from processor.platform.settings import Settings;"
            "import importlib.util as u; print(jars_dir(Settings()));"
            # hypercorn is a runtime dependency (it serves the QM console); moto is not.
            "print(all(u.find_spec(m) is None for m in ('moto', 'pytest', 'selenium')))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    jars, dev_free = done.stdout.split()
    assert Path(jars).is_relative_to(venv) and any(Path(jars).glob("amazon-kinesis-client-multilang-*.jar"))
    assert dev_free == "True", "test tools would end up in the image"
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "processor.entrypoints.probe", "healthz"],
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 1  # nothing listens: the HEALTHCHECK command itself works
