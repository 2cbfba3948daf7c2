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
    # the lessons ran: what they print is on the page, and the figures they draw beside it
    assert "[ok]" in lesson and "Output" in lesson
    assert "[OFF]" not in lesson
    figures = list((site / "lessons" / "img").glob("07-backprop-bank-loan-cell*.png"))
    assert figures, "lesson 7 draws the gradients as heat maps: no figure reached the site"
    # the math renders with no network: MathJax is served by the site itself
    assert (site / "javascripts" / "mathjax" / "tex-chtml.js").is_file()
    for page in site.rglob("*.html"):
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', page.read_text())
        remote = [src for src in scripts if src.startswith(("http:", "https:", "//"))]
        assert not remote, f"{page.relative_to(site)} loads {remote} from the network"
    api = (site / "api" / "index.html").read_text()
    for name in ("scaled_dot_product_attention", "gradcheck", "MultiHeadAttention"):
        assert name in api, f"the API reference does not document {name}"


def test_derivation_pages_include_the_real_code():
    """Every Python block of a derivation page is a snippet of the package, so the page
    shows the code that runs and cannot drift from it."""
    for page in sorted((DOCS / "derivations").glob("*.md")):
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
        assert blocks, f"{page.name} shows no code"
        copied = [b for b in blocks if not re.fullmatch(r'--8<-- "[^"]+"\n', b)]
        assert not copied, f"{page.name} has hand-written code blocks:\n{copied[0][:300]}"


def test_every_lesson_and_derivation_links_the_table_of_symbols():
    hooks = _load_hooks()
    assert (DOCS / "symbols.md").is_file()
    for lesson in hooks.lessons():
        assert "](../symbols.md)" in lesson.markdown, lesson.page
    for page in sorted((DOCS / "derivations").glob("*.md")):
        assert "](../symbols.md)" in page.read_text(), page.name


def _executed(hooks, script, outputs):
    """The script's notebook with ``outputs`` (a list per code cell) filled in."""
    import jupytext
    import nbformat

    notebook = jupytext.read(script, fmt="py:percent")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell, cell_outputs in zip(code, outputs):
        cell.outputs = [nbformat.from_dict(o) for o in cell_outputs]
    return notebook


TINY_LESSON = '''# %% [markdown]
# # A tiny lesson
#
# It prints a line and draws a figure.

# %%
print("[ok]   one and one make", 1 + 1)

# %%
import matplotlib.pyplot as plt

plt.plot([0, 1], [1, 0])
plt.show()
'''


def test_render_puts_each_cells_output_and_figures_under_it(tmp_path):
    hooks = _load_hooks()
    script = tmp_path / "01_tiny.py"
    script.write_text(TINY_LESSON)
    png = b"\x89PNG\r\n\x1a\nfake"
    executed = _executed(hooks, script, [
        [{"output_type": "stream", "name": "stdout", "text": "[ok]   one and one make 2\n"}],
        [{"output_type": "display_data", "metadata": {},
          "data": {"image/png": __import__("base64").b64encode(png).decode(),
                   "text/plain": "<Figure>"}}],
    ])
    lesson = hooks.render(script, "lessons/01-tiny.md", executed)
    text = lesson.markdown
    code = text.index('print("[ok]')
    output = text.index('```text title="Output"\n[ok]   one and one make 2\n```')
    figure = text.index("](img/01-tiny-cell")
    assert code < output < figure, "outputs and figures must follow their own code cell"
    assert list(lesson.figures.values()) == [png]
    assert all(path.startswith("lessons/img/01-tiny-cell") for path in lesson.figures)
    # without a run, the page has no output blocks and says nothing about them
    plain = hooks.render(script, "lessons/01-tiny.md").markdown
    assert "Output" not in plain and "fast mode when this site was built" not in plain


def test_render_refuses_a_lesson_whose_check_is_off(tmp_path):
    hooks = _load_hooks()
    script = tmp_path / "01_tiny.py"
    script.write_text(TINY_LESSON)
    executed = _executed(hooks, script, [
        [{"output_type": "stream", "name": "stdout", "text": "[OFF]  one and one make 3\n"}],
        [],
    ])
    with pytest.raises(hooks.PluginError, match=r"\[OFF\]"):
        hooks.render(script, "lessons/01-tiny.md", executed)


@pytest.mark.slow
def test_run_lesson_executes_the_script_and_reports_a_failure(tmp_path):
    hooks = _load_hooks()
    for module in ("nbclient", "ipykernel", "matplotlib_inline"):
        pytest.importorskip(module)
    script = tmp_path / "01_tiny.py"
    script.write_text(TINY_LESSON)
    lesson = hooks.render(script, "lessons/01-tiny.md", hooks.run_lesson(script))
    assert "[ok]   one and one make 2" in lesson.markdown
    (png,) = lesson.figures.values()
    assert png.startswith(b"\x89PNG")
    broken = tmp_path / "02_broken.py"
    broken.write_text(TINY_LESSON.replace("1 + 1)", "1 + 1)\nraise ValueError('a check')"))
    with pytest.raises(hooks.PluginError, match=r"(?s)02_broken.py failed.*ValueError: a check"):
        hooks.run_lesson(broken)
