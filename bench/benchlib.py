"""What every benchmark shares: rewriting its own section of ``bench/README.md``.

Each ``bench/<name>/run.py`` puts ``bench/`` on ``sys.path`` and imports this module.
"""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
PREAMBLE = "# Benchmarks\n\nOne section per benchmark, each rewritten by its own script with its latest figures.\n"


def update_section(section: str, readme: Path = README) -> None:
    """Replace the section whose first line (``## name``) ``section`` starts with, up to the next ``## ``
    heading, or append it; the rest of the file is kept as it is."""
    header = section.lstrip("\n").splitlines()[0].strip()
    if not header.startswith("## "):
        raise ValueError(f"a section starts with its '## ' heading, not {header!r}")
    text = readme.read_text() if readme.exists() else PREAMBLE
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join([*lines[:start], *section.strip("\n").splitlines(), "", *lines[end:]]).rstrip("\n") + "\n"
    readme.write_text(new)
