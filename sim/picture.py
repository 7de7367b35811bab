"""A PNG picture of the direct map: one cell per 2M region, coloured by its mapping."""
from __future__ import annotations

import numpy as np

from .constants import MAP_LEAF, MAP_NONE, PG_HOLE, PMD_PAGES, PROT_PRESENT, PTRS_PER_PMD

# region codes
R_HOLE, R_1G, R_2M, R_4K, R_UNMAPPED = 0, 1, 2, 3, 4
LABELS = ["hole", "1G page", "2M page", "split to 4K", "holds unmapped pages"]
COLOURS = ["#ffffff", "#2c7bb6", "#abd9e9", "#fdae61", "#d7191c"]


def region_codes(s) -> np.ndarray:
    """Per 2M region: hole / inside a 1G page / 2M page / split to 4K / holds pages that
    are not present in the direct map (vectorized, O(pages), once per run)."""
    code = np.where(s.pmd_map == MAP_NONE, R_HOLE, np.where(s.pmd_map == MAP_LEAF, R_2M, R_4K)).astype(np.uint8)
    code[np.repeat(s.pud_map == MAP_LEAF, PTRS_PER_PMD) & (code != R_HOLE)] = R_1G
    ram = (s.pg_flags & PG_HOLE) == 0
    np_pages = ((s.prot & PROT_PRESENT) == 0) & ram
    code[np_pages.reshape(-1, PMD_PAGES).any(axis=1)] = R_UNMAPPED
    return code


R_PAD = len(LABELS)  # cells after the last region, to fill the last row: not memory at all
PAD_COLOUR = "#d9d9d9"


def grid_width(n: int) -> int:
    """Cells per row: 512 (1 GiB per row) from 8 GiB up; below, the power of two that makes the
    picture about twice as wide as tall, so a row starts at a round physical address."""
    if n >= 512 * 8:
        return 512
    w = 1
    while w * w < 2 * n:
        w *= 2
    return w


def _gib(x: float) -> str:
    return f"{x:g} GiB" if x >= 1 or x == 0 else f"{x * 1024:g} MiB"


def save_png(codes: np.ndarray, path, title: str = "direct map") -> None:
    """Drawn once per run in the worker: a bare Agg figure (no pyplot state) and a fixed layout
    (no tight_layout pass, which draws the text twice)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    n = codes.size
    width = grid_width(n)
    rows = -(-n // width)
    grid = np.full(rows * width, R_PAD, np.uint8)
    grid[:n] = codes
    colours = COLOURS + [PAD_COLOUR]
    h_in = max(3.0, min(20.0, 10 * rows / width + 1.5))
    fig = Figure(figsize=(10, h_in))
    FigureCanvasAgg(fig)
    # margins in inches: title above, address labels left, the legend's two rows below
    fig.subplots_adjust(left=1.1 / 10, right=1 - 0.2 / 10, top=1 - 0.55 / h_in, bottom=0.75 / h_in)
    ax = fig.add_subplot()
    ax.imshow(grid.reshape(rows, width), cmap=ListedColormap(colours), vmin=0, vmax=len(colours) - 1,
              interpolation="nearest", aspect="auto")
    if rows * width > n:  # hatch the padding so it cannot be read as a hole
        r0, c0 = divmod(n, width)
        for x, y, w in [(c0, r0, width - c0)] + [(0, r, width) for r in range(r0 + 1, rows)]:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, 1, fill=False, hatch="///", lw=0, edgecolor="#888888"))
    row_gib = width * 2 / 1024  # 2 MiB per cell
    ax.set_title(f"{title}\none cell per 2M region, {width} per row ({_gib(row_gib)} of physical address space)",
                 fontsize=10)
    fits = max(2, int((h_in - 1.3) / 0.15))  # address labels at least 0.15 in (8 pt text) apart
    step = max(1, -(-rows // min(16, fits)))
    ticks = list(range(0, rows, step))
    ax.set_yticks(ticks)
    ax.set_yticklabels([_gib(r * row_gib) for r in ticks], fontsize=8)
    ax.set_ylabel("physical address (row start)")
    ax.set_xticks([])
    counts = np.bincount(codes, minlength=len(LABELS))
    handles = [Patch(color=COLOURS[i], label=f"{LABELS[i]} ({counts[i]})") for i in range(len(LABELS))]
    handles[0] = Patch(facecolor=COLOURS[0], edgecolor="#888888", label=f"{LABELS[0]} ({counts[0]})")
    if rows * width > n:
        handles.append(Patch(facecolor=PAD_COLOUR, hatch="///", edgecolor="#888888",
                             label=f"beyond the end of memory ({rows * width - n})"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=8)
    fig.savefig(path, dpi=100)
