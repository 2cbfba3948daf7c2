"""The lessons in examples/: each runs to the end in fast mode, checks itself, and opens as
a notebook.

A lesson "checks itself" by printing ``[ok] ...`` for every result it compares with a
reference and raising (exit code 1) on the first one that is off, so a zero exit code
and no ``[OFF]`` line mean every check in it held.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted(ROOT.glob("examples/[0-9][0-9]_*.py"))
# Lessons that train take longer than the others, even in fast mode.
SLOW = {"11_train_tiny_transformer"}


def _lesson_params():
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else [])
            for p in LESSONS]


def test_lessons_are_numbered_one_to_twelve():
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(1, len(numbers) + 1)), f"gaps or repeats in {numbers}"
    assert len(numbers) >= 12, f"expected 12 lessons, found {[p.name for p in LESSONS]}"


@pytest.mark.parametrize("script", _lesson_params())
def test_lesson_runs_and_checks_itself(script, tmp_path):
    env = dict(os.environ, MINATTN_FAST="1", MINATTN_DEVICE="cpu", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # run from an empty folder so that whatever a lesson writes stays out of the repository
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{script.name} exited with {result.returncode}:\n" \
                                   f"{output[-4000:]}"
    assert "[OFF]" not in result.stdout, output[-4000:]
    assert "[ok]" in result.stdout, f"{script.name} checked nothing against a reference"


@pytest.mark.parametrize("script", _lesson_params())
def test_lesson_is_a_percent_notebook_with_practice(script):
    """jupytext reads it as a notebook: a title cell first, prose and code, practice at the end."""
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    text = script.read_text()
    assert text.startswith("# %% [markdown]\n# # "), f"{script.name} must open with a title cell"
    notebook = jupytext.reads(text, fmt="py:percent")
    nbformat.validate(notebook)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3, kinds
    assert re.search(r"^## Practice$", text.replace("# ## Practice", "## Practice"), re.M), \
        f"{script.name} has no '## Practice' section"
    practice = next(i for i, c in enumerate(notebook.cells) if "## Practice" in c.source)
    assert "code" in kinds[practice + 1:], f"{script.name}: no code answers the practice questions"
    assert "MINATTN_FAST" in text, f"{script.name} has no fast mode"


def test_jupytext_converts_every_lesson_to_ipynb(tmp_path):
    """The command a student runs: `jupytext --to ipynb examples/NN_name.py`."""
    pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    for script in LESSONS:  # copies, so the notebooks are written to tmp_path
        shutil.copy(script, tmp_path / script.name)
    copies = sorted(str(p) for p in tmp_path.glob("*.py"))
    result = subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", *copies],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for script in LESSONS:
        notebook = nbformat.read(tmp_path / f"{script.stem}.ipynb", as_version=4)
        nbformat.validate(notebook)
        assert notebook.cells[0].cell_type == "markdown"
        assert notebook.cells[0].source.startswith("# ")
