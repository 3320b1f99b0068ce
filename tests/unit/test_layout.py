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
    return set(re.findall(r"^([a-z_./]+/)\s", layout, flags=re.MULTILINE))


def _named_modules(layout: str) -> set[str]:
    return set(re.findall(r"\b([a-z_]+\.py)\b", layout))


def test_every_processor_package_and_module_is_named() -> None:
    layout = _layout()
    folders, modules = _named_folders(layout), _named_modules(layout)
    package = ROOT / "processor"
    missing = []
    for entry in sorted(package.iterdir()):
        if entry.name.startswith((".", "__pycache__")) or entry.name in {"__init__.py", "py.typed"}:
            continue
        if entry.is_dir() and f"processor/{entry.name}/" not in folders:
            missing.append(f"processor/{entry.name}/")
        elif entry.suffix == ".py" and entry.name not in modules:
            missing.append(entry.name)
    assert missing == [], f"add to the README's Layout: {missing}"


def test_everything_named_exists() -> None:
    layout = _layout()
    for folder in _named_folders(layout):
        assert (ROOT / folder).is_dir(), folder
    for module in _named_modules(layout):
        assert (ROOT / "processor" / module).is_file(), module


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
