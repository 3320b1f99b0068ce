"""The hashed lock files (``requirements-dev.lock`` for ``make``, ``requirements.lock`` for the
image): every package pinned with its hashes, in step with ``pyproject.toml`` (``make lock``
regenerates them), the image's versions those the tests run, the environment installed from
the lock, and no version below a fixed advisory.

``make audit`` (pip-audit) checks the locked versions against PyPI's and OSV's advisory
databases; neither service answers from this machine's registries, so the advisories the
security review named are checked here against the floors and the lock."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements-dev.lock"
IMAGE_LOCK = ROOT / "requirements.lock"

# Advisories named by the security review, with the first version that fixes them.
FIXED_IN = {
    "starlette": "0.49.1",
    "jinja2": "3.1.6",
    "cryptography": "44.0.1",
    "pillow": "10.3",
}

_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^ ;\\]+)(?: ; (?P<marker>[^\\]+?))?\s*\\?$")


def entries(lock: Path) -> list[tuple[str, str, str | None, list[str]]]:
    """(name, version, marker, hashes) of each entry; any other non-comment line fails."""
    out: list[tuple[str, str, str | None, list[str]]] = []
    for line in lock.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("--hash="):
            assert out, f"{lock.name}: a hash before any entry"
            out[-1][3].append(stripped.removeprefix("--hash=").rstrip(" \\"))
            continue
        found = _ENTRY.match(line)
        assert found, f"{lock.name}: not an exact pin: {line!r}"
        out.append((canonicalize_name(found["name"]), found["version"], found["marker"], []))
    return out


def applicable(lock: Path) -> dict[str, str]:
    """name -> version of the entries whose marker holds on this interpreter (Linux, 3.11)."""
    out: dict[str, str] = {}
    for name, version, marker, _ in entries(lock):
        if marker is None or Marker(marker).evaluate():
            assert name not in out, f"{lock.name}: {name} pinned twice for this platform"
            out[name] = version
    return out


def project_requirements(*, dev: bool) -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    if dev:
        extras = project["optional-dependencies"]
        for extra in ("desktop", "local", "dev"):
            reqs += [Requirement(r) for r in extras[extra]]
    reqs += [Requirement(r) for r in pyproject["build-system"]["requires"]]
    return [r for r in reqs if canonicalize_name(r.name) != "qm-ingest"]


@pytest.mark.parametrize("lock", [DEV_LOCK, IMAGE_LOCK], ids=lambda p: p.name)
def test_every_entry_is_pinned_with_sha256_hashes(lock: Path) -> None:
    found = entries(lock)
    assert len(found) > 30
    for name, version, _, hashes in found:
        assert hashes, f"{lock.name}: {name}=={version} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (name, hashes)


@pytest.mark.parametrize(("lock", "dev"), [(DEV_LOCK, True), (IMAGE_LOCK, False)], ids=["dev", "image"])
def test_the_lock_satisfies_every_requirement_of_pyproject(lock: Path, dev: bool) -> None:
    """A requirement added or raised in pyproject.toml without ``make lock`` fails here."""
    locked = applicable(lock)
    for req in project_requirements(dev=dev):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in locked, f"{lock.name} lacks {req}: run make lock"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{lock.name} pins {name}=={locked[name]}, pyproject.toml asks {req}: run make lock"
        )


def test_the_image_ships_the_versions_the_tests_run_and_no_test_tools() -> None:
    dev, image = applicable(DEV_LOCK), applicable(IMAGE_LOCK)
    assert {name: dev.get(name) for name in image} == image
    assert not {"moto", "pytest", "selenium", "uv", "pip-audit"} & image.keys()


def test_this_environment_was_installed_from_the_dev_lock() -> None:
    differ = {}
    for name, version in applicable(DEV_LOCK).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or Version(installed) != Version(version):
            differ[name] = (version, installed)
    assert not differ, f"locked vs installed: {differ} (make install)"


@pytest.mark.parametrize("package", sorted(FIXED_IN))
def test_no_version_with_a_known_advisory_is_allowed_or_locked(package: str) -> None:
    fixed = Version(FIXED_IN[package])
    # The floor wherever it is declared: the server's dependencies or the desktop extra (pillow).
    floor = next(r for r in project_requirements(dev=True) if canonicalize_name(r.name) == package)
    below = Version(f"{fixed.major}.{fixed.minor}.{max(fixed.micro - 1, 0)}")
    if below == fixed:
        below = Version(f"{fixed.major}.{fixed.minor - 1}.99")
    assert not floor.specifier.contains(below), f"pyproject.toml still allows {package} {below}"
    assert Version(applicable(DEV_LOCK)[package]) >= fixed, f"{DEV_LOCK.name}: {package}"
    image = applicable(IMAGE_LOCK)  # the server only: a desktop library is not in it at all
    assert package not in image or Version(image[package]) >= fixed, f"{IMAGE_LOCK.name}: {package}"
