"""The README's Layout section cannot go stale: it names every package and module of
``processor/`` and every top-level folder, and everything it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _layout() -> str:
    text = README.read_text()
    section = text[text.index("## Layout\n") :]
    return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def _named_folders(layout: str) -> set[str]:
    return set(re.findall(r"^([a-z0-9_./]+/)\s", layout, flags=re.MULTILINE))


def _named_modules(layout: str) -> set[str]:
    return set(re.findall(r"\b([a-z_]+\.py)\b", layout))


PACKAGE = ROOT / "processor"
# The middle layers, where a newcomer looks for a service or a command: every module is named.
MIDDLE = ("app", "ops", "platform", "devtools", "entrypoints")


def _modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "node_modules" not in p.parts and p.name != "__init__.py"]


def test_every_processor_package_and_middle_module_is_named() -> None:
    layout = _layout()
    folders, modules = _named_folders(layout), _named_modules(layout)
    missing = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        folder = init.parent.relative_to(ROOT).as_posix() + "/"
        if folder != "processor/" and folder not in folders:
            missing.append(folder)
    for layer in MIDDLE:
        for module in sorted((PACKAGE / layer).glob("*.py")):
            if module.name != "__init__.py" and module.name not in modules:
                missing.append(module.relative_to(ROOT).as_posix())
    assert missing == [], f"add to the README's Layout: {missing}"


def test_no_two_modules_share_a_name() -> None:
    by_name: dict[str, list[str]] = {}
    for module in _modules():
        by_name.setdefault(module.name, []).append(module.relative_to(ROOT).as_posix())
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}


def _imports(layer: str) -> set[tuple[str, str]]:
    found = set()
    for module in (PACKAGE / layer).rglob("*.py"):
        for target in re.findall(r"^\s*from (processor\.[\w.]+) import", module.read_text(), flags=re.M):
            found.add((module.relative_to(ROOT).as_posix(), target))
    return found


def test_imports_point_inwards() -> None:
    outward = {
        (module, target)
        for module, target in _imports("core")
        if not target.startswith(("processor.core", "processor.platform.exceptions"))
    }
    outward |= {
        (module, target)
        for module, target in _imports("adapters")
        if not target.startswith(("processor.core", "processor.adapters", "processor.platform"))
    }
    assert outward == set()


def test_everything_named_exists() -> None:
    layout = _layout()
    names = {module.name for module in _modules()}
    for folder in _named_folders(layout):
        assert (ROOT / folder).is_dir(), folder
    for module in _named_modules(layout):
        assert module in names, module


def test_every_top_level_folder_is_named() -> None:
    folders = _named_folders(_layout())
    ignored = {"build", "node_modules"}
    for entry in ROOT.iterdir():
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in ignored:
            if entry.name.endswith(".egg-info") or entry.name == "__pycache__":
                continue
            named = f"{entry.name}/" in folders or any(f.startswith(f"{entry.name}/") for f in folders)
            assert named, entry.name


def _anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", doc.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_is_short_and_its_links_resolve() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 160
    for doc in [README, *DOCS.glob("*.md")]:
        for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: {target}"
            if anchor:
                assert anchor in _anchors(doc.parent / target), f"{doc.name}: {target}#{anchor}"


def test_every_document_is_in_the_readme_map() -> None:
    text = README.read_text()
    for doc in DOCS.glob("*.md"):
        assert f"(docs/{doc.name})" in text, doc.name
