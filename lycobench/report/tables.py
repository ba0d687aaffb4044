"""Plain tables of a report: the summary over seeds, Markdown rendering, and metrics.md."""

from __future__ import annotations


def summary_table(df):
    """Mean and std over seeds of each metric, averaged over leaves, per configuration x checkpoint x prompt type."""
    per_seed = df.groupby(["cell", "seed", "step", "prompt_type", "metric"], as_index=False)["value"].mean()
    agg = (
        per_seed.groupby(["cell", "step", "prompt_type", "metric"])["value"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    return agg.rename(columns={"count": "n_seeds"})


def markdown(df, floatfmt: str = ".4f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_report(sweep_dir, finished, unfinished, summary, result) -> str:
    import pandas as pd

    md = [
        f"# Sweep report: {sweep_dir.name}\n",
        f"{len(finished)} run(s) finished, {len(unfinished)} not finished. Open index.html for the full report.\n",
    ]
    if unfinished:
        md.append("\n## Not finished\n\n")
        md.append(
            markdown(
                pd.DataFrame(
                    [{k: u[k] for k in ("cell", "seed", "status", "cause", "error")} for u in unfinished]
                )
            )
        )
    if result is not None and len(result["table1"]):
        t = result["table1"]
        order = t.sort_values(["criterion", "rank"]).groupby("criterion", sort=True)
        rows = [
            {
                "criterion": crit,
                **{f"rank {r['rank']:g}": f"{r['cell']} ({r['score']:.2f})" for _, r in g.iterrows()},
            }
            for crit, g in order
        ]
        md.append("\n## Ranking of the algorithms per criterion (Table 1 style; rank 1 = best)\n\n")
        md.append(markdown(pd.DataFrame(rows)))
    if result is not None and len(result.get("findings", [])):
        from ..analysis import headline

        h = headline(result["findings"])
        h = h.assign(effect=[
            "" if not n else f"{e:+.2f} [{lo:+.2f}, {hi:+.2f}] ({n} pairs, {int(k)} seeds)"
            for e, lo, hi, n, k in zip(h["effect"], h["ci_lo"], h["ci_hi"], h["n_pairs"], h["n_seeds"])
        ])  # fmt: skip
        md.append("\n## The paper's findings in this study (effect: mean paired difference of normalised ")
        md.append("scores, 95% t-interval over training seeds; findings.csv)\n\n")
        md.append(markdown(h[["id", "category", "verdict", "effect", "reason"]].fillna("")))
    if result is not None and (len(result["learning"]) or result.get("no_oracle")):
        from ..analysis import no_oracle_note

        md.append("\n## Were the concepts learned? (oracle concept detection on trigger prompts)\n\n")
        if result.get("no_oracle"):
            md.append(f"{no_oracle_note(result['no_oracle'])}\n\n")
        if result["learning_warning"]:
            md.append(f"**Warning:** {result['learning_warning']}\n\n")
        if len(result["learning"]):
            md.append(markdown(result["learning"], ".3g"))
        last = result.get("learned_at_last")
        if last is not None and len(last):
            from ..analysis import learned_at_last_sentence

            md.append(f"\n{learned_at_last_sentence(last)}\n\n" + markdown(last))
    md.append("\n## Metrics (mean over leaves, mean and std over seeds; step 0 = base model)\n\n")
    md.append(markdown(summary) if len(summary) else "no finished runs yet\n")
    return "".join(md)
