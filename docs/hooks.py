"""MkDocs hooks: the lessons in examples/ become pages, run, and doctests become code blocks.

Every ``examples/NN_name.py`` is a jupytext "percent" script. Its markdown cells become
the page's prose and its code cells become code blocks, so the text of a lesson lives
in one place (the script) and the site never holds a stale copy. Each lesson is executed
while the site is built (by Jupyter's own executor, nbclient, on an IPython kernel, in fast
mode), and what every code cell printed, and every figure it drew, goes on the page under
that cell. A lesson that fails, or prints ``[OFF]``, fails the build. The pages and the
figures are made in memory (``File.generated``), never written to docs/, and listed under
the nav entry ``Lessons: lessons/index.md`` together with an overview page.

``MINATTN_DOCS_EXECUTE=0`` skips the execution (the pages then show the code only), for a
quick ``mkdocs serve`` while writing prose.

minattn's docstrings show examples as doctests (``>>>`` lines). Markdown would read
those as nested block quotes, so a small preprocessor turns each run of doctest lines
into a ``pycon`` code block before the API reference is rendered.

MathJax is served from the site itself (``on_post_build`` copies it out of the
``django-static-mathjax`` package, which holds MathJax's files and needs no Django), so
the math renders with no network.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LESSON_FILE = re.compile(r"^(\d\d)_(\w+)\.py$")
NAV_ENTRY = "lessons/index.md"
MATHJAX = "javascripts/mathjax"  # where the site holds MathJax (mkdocs.yml loads it from here)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Run before a lesson's first cell, and not shown: figures as PNG at a resolution that reads
# well in the docs column.
KERNEL_SETUP = ('%config InlineBackend.figure_formats = ["png"]\n'
                '%config InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "dpi": 110}')


@dataclass
class Lesson:
    script: Path  # examples/05_self_attention.py
    page: str  # lessons/05-self-attention.md
    title: str  # the first markdown heading
    summary: str  # the first paragraph after it
    markdown: str  # the whole page
    figures: dict[str, bytes] = field(default_factory=dict)  # site path -> PNG, drawn by it


def lesson_scripts() -> list[tuple[Path, str]]:
    """(script, page) for every numbered lesson, in order."""
    found = []
    for script in sorted(EXAMPLES.glob("*.py")):
        match = LESSON_FILE.match(script.name)
        if match:
            number, name = match.groups()
            found.append((script, f"lessons/{number}-{name.replace('_', '-')}.md"))
    return found


def lessons(execute: bool = False) -> list[Lesson]:
    """Every numbered lesson script, in order, rendered to markdown; with ``execute``, run
    (all of them at once, one kernel each) and with their outputs under the code cells."""
    found = lesson_scripts()
    if not execute:
        return [render(script, page) for script, page in found]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        runs = list(pool.map(lambda item: run_lesson(item[0]), found))
    return [render(script, page, notebook) for (script, page), notebook in zip(found, runs)]


def run_lesson(script: Path):
    """The lesson as a notebook, executed: in fast mode, on the CPU, from an empty folder
    (what a lesson writes stays out of the repository), importing this checkout's minattn."""
    import nbclient  # only when lessons run: the pages build without them

    notebook = jupytext.read(script, fmt="py:percent")
    setup = jupytext.reads("# %%\n" + KERNEL_SETUP, fmt="py:percent").cells[0]
    notebook.cells.insert(0, setup)
    env = dict(os.environ, MINATTN_FAST="1", MINATTN_DEVICE="cpu",
               MPLBACKEND="module://matplotlib_inline.backend_inline",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="minattn-lesson-") as folder:
        client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": folder}})
        try:  # the kernel's own log (not the lesson's output, which comes as messages) is noise
            client.execute(env=env, stderr=subprocess.DEVNULL)
        except nbclient.exceptions.CellExecutionError as error:
            raise PluginError(f"{_shown(script)} failed while the docs were "
                              f"built:\n{ANSI.sub('', str(error))}") from None
    notebook.cells.pop(0)
    return notebook


def render(script: Path, page: str, executed=None) -> Lesson:
    """The script's cells as one markdown page, headed by how to run it; with ``executed``
    (the notebook after running), each code cell is followed by its output and figures."""
    notebook = executed if executed is not None else jupytext.read(script, fmt="py:percent")
    stem = Path(page).stem  # 05-self-attention
    parts, figures = [], {}
    for index, cell in enumerate(notebook.cells):
        source = cell.source.strip("\n")
        if cell.cell_type == "markdown":
            if source:
                parts.append(source)
            continue
        if source:
            parts.append(f"```python\n{source}\n```")
        text, images = cell_outputs(cell)
        if "[OFF]" in text:
            raise PluginError(f"{_shown(script)}: a check is off ([OFF] in the "
                              f"output of code cell {index}):\n{text[-2000:]}")
        if text.strip():
            fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))
            parts.append(f'{fence}text title="Output"\n{text.rstrip()}\n{fence}')
        for n, png in enumerate(images, 1):
            name = f"lessons/img/{stem}-cell{index}-{n}.png"
            figures[name] = png
            parts.append(f"![A figure drawn by the code cell above](img/{Path(name).name})")
    body = "\n\n".join(parts)
    title, summary = _title_and_summary(script, body)
    rel = _shown(script)
    shown = ("    What each code cell prints, and the figures it draws, are shown under it:\n"
             "    they come from running the lesson in fast mode when this site was built.\n"
             if executed is not None else "")
    how = (f'!!! tip "Run this lesson"\n'
           f"    This page is `{rel}`, rendered. Run it with `python {rel}` (it checks itself\n"
           f"    and stops with an error if a result is off; `MINATTN_FAST=1` makes it quick),\n"
           f"    or open it as a notebook: `jupytext --to notebook {rel}`.\n{shown}")
    # the tip goes right under the page's first heading
    head, _, rest = body.partition("\n")
    markdown = f"{head}\n\n{how}\n{rest}\n" if head.startswith("# ") else f"{how}\n{body}\n"
    return Lesson(script, page, title, summary, markdown, figures)


def cell_outputs(cell) -> tuple[str, list[bytes]]:
    """What an executed code cell printed (stdout, stderr and its value, in order, without
    terminal colors) and the PNG figures it displayed."""
    text, images = [], []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            text.append(output.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "image/png" in data:
                images.append(base64.b64decode(data["image/png"]))
            elif "text/plain" in data:
                text.append(data["text/plain"] + "\n")
    return ANSI.sub("", "".join(text)), images


def _shown(script: Path) -> str:
    """The script's path as the pages show it: from the repository's root."""
    return script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else str(script)


def _title_and_summary(script: Path, body: str) -> tuple[str, str]:
    heading = re.search(r"^# (.+)$", body, re.MULTILINE)
    if heading is None:
        raise ValueError(f"{script}: a lesson must open with a markdown cell whose first "
                         "line is a '# Title' heading")
    paragraph = " ".join(body[heading.end():].strip().split("\n\n")[0].split())
    # the sentence that says what the lesson does, if there is one, else the whole paragraph
    start = paragraph.find("This lesson ")
    return heading.group(1).strip(), paragraph[start:] if start >= 0 else paragraph


def index_page(found: list[Lesson]) -> str:
    rows = "\n".join(f"| [{lesson.title}]({Path(lesson.page).name}) | {lesson.summary} |"
                     for lesson in found)
    return f"""# Lessons

Numbered, runnable scripts that build the ideas one step at a time, from the chain rule
on two numbers to training a small transformer. Each one is a plain Python file in
`examples/` that also opens as a notebook (it is in jupytext's "percent" format), prints
the error it reached against a reference, and stops with an error if a result is off.

```bash
python examples/05_self_attention.py           # one lesson, full size
MINATTN_FAST=1 python examples/05_self_attention.py  # small sizes, a few seconds
jupytext --to notebook examples/05_self_attention.py  # as a notebook (.ipynb)
```

| Lesson | What it shows |
|---|---|
{rows}

Each lesson ends with practice questions; the code cells after them demonstrate the
answers, so running the lesson checks them too.
"""


# -- doctests in docstrings -------------------------------------------------------------------


class DoctestBlocks(Preprocessor):
    """A run of lines from ``>>>`` up to the next blank line becomes a fenced pycon block."""

    FENCE = re.compile(r"^\s*(`{3,}|~{3,})")

    def run(self, lines: list[str]) -> list[str]:
        out, fence, i = [], None, 0
        while i < len(lines):
            line = lines[i]
            opening = self.FENCE.match(line)
            if fence is not None or opening:  # inside (or at) a fenced block: leave it alone
                if fence is None:
                    fence = opening.group(1)
                elif line.strip().startswith(fence):
                    fence = None
                out.append(line)
                i += 1
                continue
            stripped = line.lstrip()
            if not stripped.startswith(">>>"):
                out.append(line)
                i += 1
                continue
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(lines[i][len(indent):])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```", ""]
        return out


class DoctestExtension(Extension):
    def extendMarkdown(self, md):
        # after whitespace normalization (30), before fenced code blocks are read (25)
        md.preprocessors.register(DoctestBlocks(md), "minattn_doctests", 28)


# -- the hooks MkDocs calls --------------------------------------------------------------------


def executing() -> bool:
    """Whether the build runs the lessons (``MINATTN_DOCS_EXECUTE=0`` says no)."""
    return os.environ.get("MINATTN_DOCS_EXECUTE", "1").strip() not in ("0", "no", "false")


@event_priority(100)  # before mkdocstrings copies the markdown extensions for docstrings
def on_config(config):
    """Expand the ``Lessons: lessons/index.md`` nav entry into the overview and every lesson;
    add the doctest preprocessor to the pages and the docstrings."""
    pages = [NAV_ENTRY] + [page for _, page in lesson_scripts()]
    for i, entry in enumerate(config["nav"] or []):
        if isinstance(entry, dict) and list(entry.values()) == [NAV_ENTRY]:
            config["nav"][i] = {next(iter(entry)): pages}
    config["markdown_extensions"].append(DoctestExtension())
    return config


def on_files(files, config):
    found = lessons(execute=executing())
    files.append(File.generated(config, NAV_ENTRY, content=index_page(found)))
    for lesson in found:
        files.append(File.generated(config, lesson.page, content=lesson.markdown))
        for path, png in lesson.figures.items():
            files.append(File.generated(config, path, content=png))
    return files


def mathjax_source() -> Path:
    """MathJax's es5 folder, from the installed django-static-mathjax package."""
    try:
        import mathjax
    except ImportError:
        raise PluginError("the docs serve MathJax themselves and take it from the "
                          "django-static-mathjax package: pip install 'minattn[docs]'") from None
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (source / "tex-chtml.js").is_file():
        raise PluginError(f"no MathJax in {source} (django-static-mathjax >= 3.2 has it)")
    return source


def on_post_build(config):
    """Copy MathJax (the TeX-to-HTML component and what it loads: fonts, extensions, the
    menu, the accessibility parts) into the site, so that the math renders offline."""
    source = mathjax_source()
    target = Path(config["site_dir"]) / MATHJAX
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "tex-chtml.js", target / "tex-chtml.js")
    for folder in ("input", "output", "ui", "a11y", "adaptors", "sre"):
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)
