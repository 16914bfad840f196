"""The documentation cannot drift from the repository: the paths it names exist, every page is in the
site's navigation, and the README stays a short front page that links to every page.

The site itself is built by `make docs` (`mkdocs build --strict`), not here."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.production.conftest import ROOT

pytestmark = pytest.mark.no_db
DOCS = ROOT / "docs"
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def nav_pages() -> list[str]:
    """Every page of mkdocs.yml's nav, in order, relative to docs/."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config.get("docs_dir", "docs") == "docs"
    pages: list[str] = []

    def walk(entry) -> None:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                walk(value)

    walk(config["nav"])
    return pages


def repository_paths(markdown: str) -> list[str]:
    """The code spans outside code blocks that look like a repository path: with a "/" or ending in .py."""
    spans = CODE_SPAN.findall(FENCE.sub("", markdown))
    return [span.strip() for span in spans if "/" in span or span.strip().endswith(".py")]


def test_every_path_on_where_things_are_exists():
    paths = repository_paths((DOCS / "where-things-are.md").read_text())
    assert len(paths) > 30, "the page should name the repository's files"
    missing = [path for path in paths if not (ROOT / path.removeprefix("./")).exists()]
    assert missing == [], f"docs/where-things-are.md names paths that do not exist: {missing}"


def test_the_path_check_sees_paths_and_only_paths():
    text = "`ml/gate.py` and `manage.py`, not `*_task` or `diagnosis.services`\n```\n`in/a/block.py`\n```\n"
    assert repository_paths(text) == ["ml/gate.py", "manage.py"]


def test_the_nav_lists_every_page_once_and_only_pages_that_exist():
    pages = nav_pages()
    assert len(pages) == len(set(pages)), "a page is listed twice in mkdocs.yml's nav"
    assert [page for page in pages if not (DOCS / page).is_file()] == [], "mkdocs.yml's nav names a missing page"
    on_disk = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    assert sorted(set(on_disk) - set(pages)) == [], "a page under docs/ is missing from mkdocs.yml's nav"
    assert pages[0] == "index.md"


def test_the_readme_is_a_short_front_page_that_links_to_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250, "README.md is the front page: move the detail into docs/"
    links = set(re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", readme))
    missing = [page for page in nav_pages() if f"docs/{page}" not in links]
    assert missing == [], f"README.md does not link to these documentation pages: {missing}"
    assert [link for link in links if not (ROOT / link).exists()] == [], "README.md links to a missing file"
