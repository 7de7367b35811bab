"""The sweep table (polars, one row per run: swept params + final counters), the result per
policy (printed, HTML) and the plots: a summary per policy and one per swept axis."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import polars as pl

from .naming import swept_keys

# the sweep table's headline columns: (column, short label for the printed summary, format)
HEADLINE = [("direct_map_level2_splits", "L2 splits", "{:.0f}"), ("direct_map_level3_splits", "L3 splits", "{:.0f}"),
            ("DirectMap4k_MiB", "4k MiB", "{:.0f}"), ("memory_held_MiB", "held MiB", "{:.1f}"),
            ("memory_stranded_MiB", "strand MiB", "{:.1f}"), ("alloc_fail", "fails", "{:.0f}"),
            ("tlb_flush_kernel_range", "tlb range", "{:.0f}"), ("tlb_flush_kernel_pages", "tlb pages", "{:.0f}"),
            ("tlb_flush_all", "tlb all", "{:.0f}")]
KEY_METRICS = [c for c, _, _ in HEADLINE]
PLOTS = [  # (title, column, y label)
    ("level-2 splits (2M -> 4K)", "direct_map_level2_splits", "direct_map_level2_splits"),
    ("level-3 splits (1G -> 2M)", "direct_map_level3_splits", "direct_map_level3_splits"),
    ("memory held (unmapped)", "memory_held_MiB", "MiB held (unmapped_cache_held_pages)"),
    ("memory stranded (free but unmapped)", "memory_stranded_MiB", "MiB (unmapped_cache_stranded_pages)"),
    ("allocation failures", "alloc_fail", "alloc_fail"),
    ("flush_tlb_kernel_range calls", "tlb_flush_kernel_range", "tlb_flush_kernel_range"),
    ("pages flushed by range", "tlb_flush_kernel_pages", "tlb_flush_kernel_pages"),
    ("global flushes (flush_tlb_all)", "tlb_flush_all", "tlb_flush_all"),
]
PLOT_COLS = 4  # plots per row of a figure
MAX_BAR_GROUPS = 12  # the summary groups its bars by the swept categories up to this many groups


def sweep_table(jobs: Sequence, ledger_rows: dict[str, dict], names=None) -> pl.DataFrame:
    """One row per job of the sweep (latest ledger row of its hash; 'pending' if none)."""
    rows = []
    for j in jobs:
        lr = ledger_rows.get(j.hash)
        m = json.loads(lr["metrics"]) if lr and lr.get("metrics") else {}
        row = {"run": names.name(j) if names is not None else None, "config_hash": j.hash,
               "status": lr["status"] if lr else "pending", "run_id": lr["run_id"] if lr else None,
               "policy": j.sc.policy.name}
        for k, v in j.params.items():
            if k != "policy":
                row[k] = v
        row.update({k: float(v) for k, v in m.items()})
        row["error"] = (lr.get("error") or "").split("\n")[0] if lr else None
        rows.append(row)
    if not rows:
        return pl.DataFrame()
    df = pl.DataFrame(rows, infer_schema_length=None)
    if names is None:
        df = df.drop("run")
    mib = 4.0 / 1024
    for src, dst in (("unmapped_cache_held_pages", "memory_held_MiB"),
                     ("unmapped_cache_stranded_pages", "memory_stranded_MiB")):
        if src in df.columns:
            df = df.with_columns((pl.col(src) * mib).alias(dst))
    if "DirectMap4k" in df.columns:
        df = df.with_columns((pl.col("DirectMap4k") / 1024).alias("DirectMap4k_MiB"))
    return df


def swept_columns(jobs: Sequence) -> list[str]:
    """Override keys whose value differs between jobs (the sweep's axes)."""
    return swept_keys(jobs)


def top_rows(df: pl.DataFrame, jobs: Sequence, n: int, sort_by: str) -> pl.DataFrame:
    if df.is_empty():
        return df
    cols = (["run"] if "run" in df.columns else ["policy"] + [c for c in swept_columns(jobs) if c != "policy"])
    cols += ["status"] + [c for c in KEY_METRICS if c in df.columns]
    cols = [c for c in dict.fromkeys(cols) if c in df.columns]
    out = df.select(cols)
    if sort_by in out.columns:
        out = out.sort(sort_by, nulls_last=True)
    return out.head(n)


def by_policy(df: pl.DataFrame) -> pl.DataFrame:
    """Mean of the headline columns per policy over the finished runs (in sweep order)."""
    done = df.filter(pl.col("status") == "done") if "status" in df.columns else df
    if done.is_empty():
        return pl.DataFrame()
    cols = [c for c in KEY_METRICS if c in done.columns]
    return done.group_by("policy", maintain_order=True).agg(pl.len().alias("runs"), *[pl.col(c).mean() for c in cols])


def parent_metrics(df: pl.DataFrame) -> dict[str, float]:
    """The parent run's result metrics: per policy the mean headline counters,
    `0_headline/<policy>/<counter>`."""
    from .metric_names import HEADLINE as PREFIX

    g = by_policy(df)
    out = {}
    for r in (g.iter_rows(named=True) if not g.is_empty() else []):
        for c in KEY_METRICS:
            if r.get(c) is not None:
                out[f"{PREFIX}{r['policy']}/{c}"] = round(float(r[c]), 2)
    return out


def _fmt(fmt: str, v) -> str:
    return "-" if v is None else fmt.format(v)


def _shown(df: pl.DataFrame) -> list[tuple[str, str, str]]:
    """Headline columns worth a column: level-2 splits always, the others when not all zero."""
    return [(c, lab, f) for c, lab, f in HEADLINE if c in df.columns
            and (c == "direct_map_level2_splits" or (df[c].fill_null(0) != 0).any())]


def fixed_table(df: pl.DataFrame, first: list[str], width: int = 100) -> list[str]:
    """Rows of `df` as fixed-width text: the `first` (text) columns, then the headline columns."""
    cols = _shown(df)
    ws = [max(4, min(40, max(len(str(v)) for v in df[c].to_list() + [c]))) for c in first]
    head = " ".join(f"{c:<{w}}" for c, w in zip(first, ws)) + "".join(f" {lab:>10}" for _, lab, _ in cols)
    lines = [head[:width].rstrip()]
    for r in df.iter_rows(named=True):
        line = " ".join(f"{str(r[c])[:w]:<{w}}" for c, w in zip(first, ws))
        line += "".join(f" {_fmt(f, r[c]):>10}" for c, _, f in cols)
        lines.append(line[:width].rstrip())
    return lines


def result_lines(df: pl.DataFrame, baseline: str = "none", width: int = 100) -> list[str]:
    """The result in a few lines of at most `width` columns: per policy the mean headline
    counters, then each policy's change in level-2 splits against `baseline`."""
    import textwrap

    g = by_policy(df)
    if g.is_empty():
        return []
    lines = fixed_table(g.with_columns(pl.col("runs").cast(pl.Utf8)), ["policy", "runs"], width)
    rows = {r["policy"]: r for r in g.iter_rows(named=True)}
    base = rows.get(baseline)
    l2 = "direct_map_level2_splits"
    if base is not None and l2 in g.columns:
        for pol, r in rows.items():
            if pol == baseline:
                continue
            b, v = base[l2], r[l2]
            if b:
                change = (b - v) / b * 100
                verb = f"{change:.0f} % fewer" if change >= 0 else f"{-change:.0f} % more"
            else:
                verb = "no change in" if not v else "more"
            held = r.get("memory_held_MiB")
            tail = f", holding {held:.1f} MiB at the end" if held is not None else ""
            fails = r.get("alloc_fail")
            if fails is not None and base.get("alloc_fail") is not None:
                tail += f", {fails:.0f} allocation failures ({base['alloc_fail']:.0f} with {baseline})"
            text = f"{pol}: {verb} level-2 splits than {baseline} ({b:.0f} -> {v:.0f} per run){tail}."
            lines += textwrap.wrap(text, width, subsequent_indent="  ")
    return lines


def _esc(v) -> str:
    import html

    if isinstance(v, float):
        v = f"{v:.6g}"
    return html.escape("" if v is None else str(v))


def html_table(df: pl.DataFrame, jobs: Sequence, title: str, description: str = "") -> str:
    """The sweep as one HTML page (MLflow previews it among the parent run's artifacts): the
    result per policy, then one row per run with its swept values and headline counters."""
    sw = [c for c in swept_columns(jobs) if c != "policy" and c in df.columns]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>",
             "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse;margin:8px 0}",
             "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right} th{background:#eee}",
             "td.l,th.l{text-align:left} .failed{color:#b00}</style></head><body>",
             f"<h3>{_esc(title)}</h3>"]
    if description:
        parts.append(f"<p>{_esc(description)}</p>")
    lines = result_lines(df, width=100)
    if lines:
        parts.append("<pre>" + _esc("\n".join(lines)) + "</pre>")
    shown = [c for c, _, _ in _shown(df)]
    cols = [c for c in (["run"] if "run" in df.columns else ["policy"]) + sw + ["status"] + shown if c in df.columns]
    left = {"run", "policy", "status", *sw}
    parts.append("<table id='sweep-table'><tr>" + "".join(
        f"<th class='{'l' if c in left else ''}'>{_esc(c)}</th>" for c in cols) + "</tr>")
    for r in df.select(cols).iter_rows(named=True):
        cls = " class='failed'" if r.get("status") == "failed" else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td class='{'l' if c in left else ''}'>{_esc(r[c])}</td>"
                                             for c in cols) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _bars(ax, done: pl.DataFrame, col: str) -> None:
    g = done.group_by("policy", maintain_order=True).agg(pl.col(col).mean().alias("m"),
                                                         pl.col(col).std().alias("sd"), pl.len().alias("n"))
    pols, means, sds = g["policy"].to_list(), g["m"].to_list(), g["sd"].fill_null(0).to_list()
    ax.bar(range(len(pols)), means, yerr=sds, capsize=4, color=[f"C{i}" for i in range(len(pols))])
    for x, m, sd in zip(range(len(pols)), means, sds):  # the mean above its error bar
        ax.text(x, m + sd, f"{m:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(pols)))
    ax.set_xticklabels([f"{p}\n({n} runs)" for p, n in zip(pols, g["n"].to_list())], fontsize=7,
                       rotation=15 if len(pols) > 3 else 0)
    ax.margins(y=0.15)
    if not any(means):
        ax.set_ylim(0, 1)


def bar_groups(done: pl.DataFrame, xs: Sequence[str]) -> list[str]:
    """The swept keys the summary groups its bars by: those whose values are categories (e.g.
    workload), when their combinations make at most MAX_BAR_GROUPS groups. Numeric axes get
    their own line plots instead."""
    keys = [x for x in xs if not done[x].dtype.is_numeric()]
    if not keys or done.select(keys).unique().height > MAX_BAR_GROUPS:
        return []
    return keys


def _grouped_bars(ax, done: pl.DataFrame, col: str, keys: list[str]) -> None:
    """One group of bars per combination of `keys` (in sweep order), one bar per policy in each
    (mean over the group's runs, error bar = standard deviation), its mean written above it.
    A log scale when the bars span two decades or more (flushes: millions against thousands)."""
    lab = pl.concat_str([pl.col(k).cast(pl.Utf8) for k in keys], separator="\n").alias("_group")
    d = done.with_columns(lab)
    groups = d["_group"].unique(maintain_order=True).to_list()
    pols = d["policy"].unique(maintain_order=True).to_list()
    g = d.group_by("_group", "policy", maintain_order=True).agg(pl.col(col).mean().alias("m"),
                                                                pl.col(col).std().alias("sd"))
    cell = {(r["_group"], r["policy"]): (r["m"], r["sd"]) for r in g.iter_rows(named=True)}
    w = 0.8 / max(1, len(pols))
    for i, pol in enumerate(pols):
        xs = [gi + (i - (len(pols) - 1) / 2) * w for gi in range(len(groups))]
        ms = [cell.get((gr, pol), (None, None))[0] for gr in groups]
        sds = [cell.get((gr, pol), (None, None))[1] for gr in groups]
        ax.bar(xs, [m or 0 for m in ms], width=w, yerr=[s or 0 for s in sds], capsize=2, color=f"C{i}",
               label=pol)
        for x, m, sd in zip(xs, ms, sds):
            if m is not None:  # above the error bar
                ax.text(x, m + (sd or 0), f"{m:.3g}", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    pos = [m for m, _ in cell.values() if m]
    if pos and min(pos) > 0 and max(pos) / min(pos) >= 100:
        ax.set_yscale("symlog", linthresh=max(1.0, min(pos)))
    elif not pos:
        ax.set_ylim(0, 1)
    ax.margins(y=0.25)


def plot(df: pl.DataFrame, jobs: Sequence, out_dir: Path, plot_x: Sequence[str] = ()) -> list[Path]:
    """summary.png: level-2 splits, memory held, allocation failures and TLB flushes per policy (bars); then
    for each x axis (a swept key other than policy and seed, e.g. policy.max_blocks) the same
    against x, one line per policy (mean over other keys)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = df.filter(pl.col("status") == "done") if "status" in df.columns else df
    if done.is_empty():
        return []
    xs = [x for x in (list(plot_x) or swept_columns(jobs)) if x in done.columns and x not in ("policy", "seed")]
    keys = bar_groups(done, xs)
    xs = [x for x in xs if x not in keys]  # (categories grouped in the summary get no line plot)
    paths = []
    # the summary: one bar per policy (mean over the sweep's runs, error bar = standard deviation),
    # in one group per swept category (e.g. per workload) when the sweep has such axes
    rows = -(-len(PLOTS) // PLOT_COLS)
    width = 4.2 if not keys else max(4.2, 0.35 * done["policy"].n_unique() * done.select(keys).unique().height + 1)
    fig, axes = plt.subplots(rows, PLOT_COLS, figsize=(width * PLOT_COLS, 3.6 * rows), squeeze=False)
    for ax, (title, col, ylabel) in zip(axes.flat, PLOTS):
        if col in done.columns:
            if keys:
                _grouped_bars(ax, done, col, keys)
            else:
                _bars(ax, done, col)
        ax.set_title(title if col in done.columns else f"{title}: not measured", fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
    per = "per policy" + (" and " + " x ".join(keys) if keys else "")
    fig.suptitle(f"{per}: mean over its runs, error bar = standard deviation", fontsize=9, x=0.01, ha="left")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:  # one legend for all plots: the policies' colours
        fig.legend(handles, labels, loc="upper right", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95) if handles else None)
    p = out_dir / "summary.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    paths.append(p)
    for x in xs:
        fig, axes = plt.subplots(rows, PLOT_COLS, figsize=(5 * PLOT_COLS, 4 * rows), squeeze=False)
        for ax, (title, col, ylabel) in zip(axes.flat, PLOTS):
            if col not in done.columns:
                ax.set_title(f"{title}: not measured")
                continue
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
        p = out_dir / f"sweep_{x.replace('/', '_')}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths
