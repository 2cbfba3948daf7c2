"""The documentation site: the nav points at pages that exist, the lesson pages are rendered
from the scripts (never copied), and `mkdocs build --strict` succeeds (no broken link, no
missing page, no unresolved API reference)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _load_hooks():
    pytest.importorskip("jupytext")
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("minattn_docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = hooks  # dataclasses look their module up there
    spec.loader.exec_module(hooks)
    return hooks


def _nav_pages(nav) -> list[str]:
    """Every page path named in the nav, at any depth."""
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_nav_page_exists():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    generated = {"lessons/index.md"}  # made by docs/hooks.py at build time
    missing = [p for p in _nav_pages(config["nav"]) if p not in generated
               and not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml names pages that do not exist: {missing}"


def test_snippets_point_at_existing_files():
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r'^--8<-- "([^"]+)"', page.read_text(), re.M):
            path, _, section = target.partition(":")  # "file.py:name": a marked section
            assert (ROOT / path).is_file(), f"{page.name} includes missing {path}"
            if section:
                assert f"--8<-- [start:{section}]" in (ROOT / path).read_text(), \
                    f"{page.name} includes section {section!r}, which {path} does not mark"


def test_hook_renders_every_lesson_from_its_script():
    hooks = _load_hooks()
    lessons = hooks.lessons()
    scripts = sorted(p.name for p in (ROOT / "examples").glob("[0-9][0-9]_*.py"))
    assert [lesson.script.name for lesson in lessons] == scripts
    for lesson in lessons:
        text = lesson.script.read_text()
        assert lesson.markdown.startswith(f"# {lesson.title}\n")
        assert lesson.summary, f"{lesson.script.name}: no summary paragraph under the title"
        assert "```python" in lesson.markdown
        # the page carries the script's prose and code, not a hand-written copy
        first_code_line = next(line for line in text.splitlines()
                               if line and not line.startswith("#"))
        assert first_code_line in lesson.markdown
        assert "## Practice" in lesson.markdown
    index = hooks.index_page(lessons)
    for lesson in lessons:
        assert f"]({Path(lesson.page).name})" in index


def test_hook_expands_the_lessons_nav_entry_and_adds_the_doctest_blocks():
    hooks = _load_hooks()
    config = {"nav": [{"Home": "index.md"}, {"Lessons": "lessons/index.md"}],
              "markdown_extensions": []}
    config = hooks.on_config(config)
    nav = config["nav"]
    assert any(isinstance(e, hooks.DoctestExtension) for e in config["markdown_extensions"])
    pages = nav[1]["Lessons"]
    assert pages[0] == "lessons/index.md"
    assert pages[1:] == [lesson.page for lesson in hooks.lessons()]


def test_doctests_become_code_blocks_outside_fences_only():
    hooks = _load_hooks()
    markdown = pytest.importorskip("markdown")
    text = "An example.\n\n>>> x = f([1, 2])[:2]\n>>> x\n[1, 2]\n\n```python\n>>> kept\n```"
    lines = hooks.DoctestBlocks(markdown.Markdown()).run(text.split("\n"))
    assert lines[2:7] == ["```pycon", ">>> x = f([1, 2])[:2]", ">>> x", "[1, 2]", "```"]
    assert lines[-3:] == ["```python", ">>> kept", "```"]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "jupytext"):
        pytest.importorskip(module)
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    lesson = (site / "lessons" / "05-self-attention" / "index.html").read_text()
    assert "bank" in lesson and "scaled_dot_product_attention" in lesson
    api = (site / "api" / "index.html").read_text()
    for name in ("scaled_dot_product_attention", "gradcheck", "MultiHeadAttention"):
        assert name in api, f"the API reference does not document {name}"
