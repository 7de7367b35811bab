"""The sweep table (polars, one row per run: swept params + final metrics) and its plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import polars as pl

KEY_METRICS = ["direct_map_level2_splits", "direct_map_level3_splits", "DirectMap4k", "alloc_fail",
               "unmapped_cache_blocks", "held_mib"]
PLOTS = [  # (title, column, y label)
    ("level-2 splits", "direct_map_level2_splits", "direct_map_level2_splits"),
    ("memory held by the cache", "held_mib", "MiB held (unmapped_cache_held_pages)"),
    ("allocation failures", "alloc_fail", "alloc_fail"),
]


def sweep_table(jobs: Sequence, ledger_rows: dict[str, dict]) -> pl.DataFrame:
    """One row per job of the sweep (latest ledger row of its hash; 'pending' if none)."""
    rows = []
    for j in jobs:
        lr = ledger_rows.get(j.hash)
        m = json.loads(lr["metrics"]) if lr and lr.get("metrics") else {}
        row = {"config_hash": j.hash, "status": lr["status"] if lr else "pending",
               "run_id": lr["run_id"] if lr else None, "policy": j.sc.policy.name}
        for k, v in j.params.items():
            if k != "policy":
                row[k] = v
        row.update({k: float(v) for k, v in m.items()})
        row["error"] = (lr.get("error") or "").split("\n")[0] if lr else None
        rows.append(row)
    if not rows:
        return pl.DataFrame()
    df = pl.DataFrame(rows, infer_schema_length=None)
    if "unmapped_cache_held_pages" in df.columns:
        df = df.with_columns((pl.col("unmapped_cache_held_pages") * 4.0 / 1024).alias("held_mib"))
    elif "unmapped_cache_blocks" in df.columns:
        df = df.with_columns((pl.col("unmapped_cache_blocks") * 2.0).alias("held_mib"))
    return df


def swept_columns(jobs: Sequence) -> list[str]:
    """Override keys whose value differs between jobs (the sweep's axes)."""
    values: dict[str, set] = {}
    for j in jobs:
        for k, v in j.params.items():
            values.setdefault(k, set()).add(str(v))
    return [k for k, v in values.items() if len(v) > 1]


def top_rows(df: pl.DataFrame, jobs: Sequence, n: int, sort_by: str) -> pl.DataFrame:
    if df.is_empty():
        return df
    cols = ["policy"] + [c for c in swept_columns(jobs) if c != "policy"] + ["status"]
    cols += [c for c in KEY_METRICS if c in df.columns and c not in cols]
    cols = [c for c in dict.fromkeys(cols) if c in df.columns]
    out = df.select(cols)
    if sort_by in out.columns:
        out = out.sort(sort_by, nulls_last=True)
    return out.head(n)


def plot(df: pl.DataFrame, jobs: Sequence, out_dir: Path, plot_x: Sequence[str] = ()) -> list[Path]:
    """For each x axis (a numeric swept key, e.g. policy.max_blocks): level-2 splits, memory
    held and allocation failures against x, one line per policy (mean over other keys)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = df.filter(pl.col("status") == "done") if "status" in df.columns else df
    if done.is_empty():
        return []
    xs = [x for x in (list(plot_x) or swept_columns(jobs)) if x in done.columns and x not in ("policy", "seed")]
    paths = []
    for x in xs or [None]:
        fig, axes = plt.subplots(1, len(PLOTS), figsize=(5 * len(PLOTS), 4))
        for ax, (title, col, ylabel) in zip(axes, PLOTS):
            if col not in done.columns:
                ax.set_title(f"{title}: not measured")
                continue
            if x is None:
                g = done.group_by("policy").agg(pl.col(col).mean()).sort("policy")
                ax.bar(g["policy"].to_list(), g[col].to_list())
            else:
                if not done[x].dtype.is_numeric():  # categories (e.g. an order mix): plotted in sweep order
                    done = done.with_columns(pl.col(x).cast(pl.Utf8))
                for pol, sub in done.group_by("policy", maintain_order=True):
                    g = sub.group_by(x, maintain_order=True).agg(pl.col(col).mean(), pl.col(col).std().alias("sd"))
                    if g[x].dtype.is_numeric():
                        g = g.sort(x)
                    ax.errorbar(g[x].to_list(), g[col].to_list(), yerr=g["sd"].fill_null(0).to_list(),
                                marker="o", capsize=3, label=str(pol[0] if isinstance(pol, tuple) else pol))
                ax.set_xlabel(x)
                if done[x].dtype.is_numeric() and (done[x].min() or 0) > 0 and done[x].max() / done[x].min() >= 16:
                    ax.set_xscale("log", base=2)
                elif not done[x].dtype.is_numeric():
                    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
                ax.legend(title="policy", fontsize=8)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
        fig.tight_layout()
        p = out_dir / f"sweep_{(x or 'policy').replace('/', '_')}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths
