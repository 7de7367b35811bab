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


def save_png(codes: np.ndarray, path, title: str = "direct map") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n = codes.size
    width = 512 if n >= 512 * 8 else max(1, int(np.ceil(np.sqrt(n))))
    rows = -(-n // width)
    grid = np.zeros(rows * width, np.uint8)
    grid[:n] = codes
    fig, ax = plt.subplots(figsize=(10, max(2.0, min(20.0, 10 * rows / width + 1))))
    ax.imshow(grid.reshape(rows, width), cmap=ListedColormap(COLOURS), vmin=0, vmax=len(COLOURS) - 1,
              interpolation="nearest", aspect="auto")
    ax.set_title(f"{title}: one cell per 2M region, {width} per row (1 GiB = 512 cells)")
    ax.set_xticks([])
    ax.set_ylabel("GiB" if width == 512 else "row")
    counts = np.bincount(codes, minlength=len(LABELS))
    ax.legend(handles=[Patch(color=COLOURS[i], label=f"{LABELS[i]} ({counts[i]})") for i in range(len(LABELS))],
              loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
