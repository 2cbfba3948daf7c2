"""MkDocs hooks: the lessons in examples/ become pages, and doctests become code blocks.

Every ``examples/NN_name.py`` is a jupytext "percent" script. Its markdown cells become
the page's prose and its code cells become code blocks, so the text of a lesson lives
in one place (the script) and the site never holds a stale copy. The pages are made in
memory (``File.generated``), never written to docs/, and listed under the nav entry
``Lessons: lessons/index.md`` together with an overview page.

minattn's docstrings show examples as doctests (``>>>`` lines). Markdown would read
those as nested block quotes, so a small preprocessor turns each run of doctest lines
into a ``pycon`` code block before the API reference is rendered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jupytext
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LESSON_FILE = re.compile(r"^(\d\d)_(\w+)\.py$")
NAV_ENTRY = "lessons/index.md"


@dataclass
class Lesson:
    script: Path  # examples/05_self_attention.py
    page: str  # lessons/05-self-attention.md
    title: str  # the first markdown heading
    summary: str  # the first paragraph after it
    markdown: str  # the whole page


def lessons() -> list[Lesson]:
    """Every numbered lesson script, in order, rendered to markdown."""
    found = []
    for script in sorted(EXAMPLES.glob("*.py")):
        match = LESSON_FILE.match(script.name)
        if match:
            number, name = match.groups()
            found.append(render(script, f"lessons/{number}-{name.replace('_', '-')}.md"))
    return found


def render(script: Path, page: str) -> Lesson:
    """The script's cells as one markdown page, headed by how to run it."""
    notebook = jupytext.read(script, fmt="py:percent")
    parts = []
    for cell in notebook.cells:
        source = cell.source.strip("\n")
        if not source:
            continue
        if cell.cell_type == "markdown":
            parts.append(source)
        else:
            parts.append(f"```python\n{source}\n```")
    body = "\n\n".join(parts)
    title, summary = _title_and_summary(script, body)
    rel = script.relative_to(ROOT).as_posix()
    how = (f'!!! tip "Run this lesson"\n'
           f"    This page is `{rel}`, rendered. Run it with `python {rel}` (it checks itself\n"
           f"    and stops with an error if a result is off; `MINATTN_FAST=1` makes it quick),\n"
           f"    or open it as a notebook: `jupytext --to notebook {rel}`.\n")
    # the tip goes right under the page's first heading
    head, _, rest = body.partition("\n")
    markdown = f"{head}\n\n{how}\n{rest}\n" if head.startswith("# ") else f"{how}\n{body}\n"
    return Lesson(script, page, title, summary, markdown)


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


@event_priority(100)  # before mkdocstrings copies the markdown extensions for docstrings
def on_config(config):
    """Expand the ``Lessons: lessons/index.md`` nav entry into the overview and every lesson;
    add the doctest preprocessor to the pages and the docstrings."""
    pages = [NAV_ENTRY] + [lesson.page for lesson in lessons()]
    for i, entry in enumerate(config["nav"] or []):
        if isinstance(entry, dict) and list(entry.values()) == [NAV_ENTRY]:
            config["nav"][i] = {next(iter(entry)): pages}
    config["markdown_extensions"].append(DoctestExtension())
    return config


def on_files(files, config):
    found = lessons()
    files.append(File.generated(config, NAV_ENTRY, content=index_page(found)))
    for lesson in found:
        files.append(File.generated(config, lesson.page, content=lesson.markdown))
    return files
