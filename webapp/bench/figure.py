"""Headless PNG figures for the benchmark harnesses (matplotlib loads only when plotting)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def png_figure(path: str | Path, *, dpi: int = 110, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """Yield `(figure, axes)` of `plt.subplots(**subplots)`; lay out and write the PNG on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
