"""MkDocs hook: the PyTorch page's list of supported names, generated from the code.

``docs/pytorch.md`` holds the marker ``<!-- supported-names -->``; at build time it is
replaced by ``minattn.pytorch.supported()``, one section per torch module, so the page
lists exactly the names ``minattn run`` serves and can never drift from them. This file
lives in docs/ beside the page; it takes itself out of the site's files.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = "pytorch.md"
MARKER = "<!-- supported-names -->"


def _supported() -> dict[str, list[str]]:
    if str(ROOT) not in sys.path:  # the minattn of this checkout, not another install
        sys.path.insert(0, str(ROOT))
    from minattn import pytorch

    return pytorch.supported()


def supported_markdown(supported: dict[str, list[str]] | None = None) -> str:
    """One section per torch module: its names as inline code, in alphabetical order."""
    supported = _supported() if supported is None else supported
    parts = []
    for module, names in supported.items():
        what = "methods and properties" if module == "torch.Tensor" else "names"
        listed = ", ".join(f"`{name}`" for name in names) or "(none yet)"
        parts.append(f"### `{module}`\n\n{len(names)} {what}: {listed}\n")
    return "\n".join(parts)


def on_files(files, config):
    hook = files.get_file_from_path(Path(__file__).name)
    if hook is not None:  # a hook, not a page or an asset of the site
        files.remove(hook)
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its marker {MARKER}: the supported names go there")
    return markdown.replace(MARKER, supported_markdown())
