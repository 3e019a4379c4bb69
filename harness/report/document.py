"""The report as data: sections of text, tables and figures, rendered to markdown here and to
HTML by `harness.report.html`.

Text blocks use a small markdown subset (paragraphs, `- ` lists, `> ` quotes, `code`, **bold**)
that both renderers understand.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure


@dataclass
class Plot:
    """A figure saved as `<folder>/<name>.png` for markdown and embedded in HTML."""
    name: str
    figure: Figure
    caption: str
    folder: str = "figures"
    _png: bytes | None = field(default=None, repr=False)

    @property
    def png(self) -> bytes:
        # Rendered once: both documents and the figure file share the bytes.
        if self._png is None:
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", dpi=100)
            self._png = buffer.getvalue()
        return self._png

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}.png" if self.folder else f"{self.name}.png"


@dataclass
class Gallery:
    """Several plots shown side by side in HTML, one after another in markdown."""
    plots: list[Plot]


@dataclass
class Table:
    """Display text, one string per cell; the HTML version sorts by clicking a header."""
    frame: pd.DataFrame


Block = str | Plot | Gallery | Table


@dataclass
class Section:
    title: str
    blocks: list[Block]

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def plots(sections: list[Section]) -> list[Plot]:
    """Every plot of the report, in order."""
    found = []
    for section in sections:
        for block in section.blocks:
            if isinstance(block, Gallery):
                found += block.plots
            elif isinstance(block, Plot):
                found.append(block)
    return found


def skipped(reason: str) -> str:
    """The note that stands in for a section or figure without data."""
    return f"> *Skipped:* {reason}"


def _markdown_plot(plot: Plot) -> str:
    caption = plot.caption.replace("*", "\\*")  # captions may mention "*" marks
    return f"![{caption}]({plot.path})\n\n*{caption}*"


def _markdown_block(block: Block) -> str:
    if isinstance(block, Plot):
        return _markdown_plot(block)
    if isinstance(block, Gallery):
        return "\n\n".join(map(_markdown_plot, block.plots))
    if isinstance(block, Table):
        # A "|" in a cell (task pairs "a|b") would end the cell.
        cells = block.frame.astype(str).map(lambda text: text.replace("|", "\\|"))
        return cells.to_markdown(index=False, disable_numparse=True)
    return block


def to_markdown(title: str, intro: list[str], sections: list[Section]) -> str:
    """The whole report as markdown; figures are referenced by their relative path."""
    parts = [f"# {title}", *intro]
    for section in sections:
        parts += [f"## {section.title}", *map(_markdown_block, section.blocks)]
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"
