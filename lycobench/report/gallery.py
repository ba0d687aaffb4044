"""The page's image grids: per leaf and prompt type, one contact sheet per training seed behind a seed
selector made of radio buttons and CSS (the page has no script)."""

from __future__ import annotations

from html import escape

from .html_parts import anchor


def gallery_css(grids: list[dict]) -> str:
    """The selector's rules: the sheet of the checked seed is shown, the others are hidden (and, loaded
    lazily, not fetched until picked)."""
    n = max((len(g["sheets"]) for g in grids), default=0)
    rules = [".seeds>.sheet{display:none} .seeds>.sheet.only{display:block} .seeds>label{margin-right:.8em}"]
    rules += [
        f".seeds>input:nth-of-type({k}):checked~a.sheet:nth-of-type({k}){{display:block}}"
        for k in range(1, n + 1)
    ]
    return "\n".join(rules)


def grids_section(result: dict) -> str:
    grids = result.get("grids") or []
    if not grids:
        return "<p class='note'>No images found.</p>"
    cats = result["scores"].query("scope == 'leaf'").drop_duplicates("leaf").set_index("leaf")["category"]
    parts = [
        "<p>Per leaf and prompt type: the leaf's training images on top, then the base model, then one row "
        "per configuration and one column per checkpoint; each cell shows the first images of the prompt "
        "file, with the same prompts and generation seeds in every cell (listed under each grid). One sheet "
        "per training seed: pick the seed above the sheet. Small images are enlarged pixel for pixel "
        "(nearest neighbour). Click a sheet for full size.</p>"
    ]
    by_cat: dict[str, list[dict]] = {}
    for g in grids:
        by_cat.setdefault(cats.get(g["leaf"], "unknown"), []).append(g)
    parts.append("<a id='grids-all'></a>")
    for cat in sorted(by_cat):
        parts.append(f"<h3 id='grids-{anchor(cat)}'>{escape(cat)}</h3>")
        parts.append("<div class='figs'>" + "".join(_grid(g) for g in by_cat[cat]) + "</div>")
    return "".join(parts)


def _grid(g: dict) -> str:
    a = anchor(g["leaf"], g["prompt_type"])
    what = f"{escape(g['leaf'])} {escape(g['prompt_type'])}"
    sheets = g["sheets"]
    body = []
    if len(sheets) > 1:
        for k, s in enumerate(sheets):
            checked = " checked" if k == 0 else ""
            body.append(f"<input type='radio' name='seed-{a}' id='seed-{a}-{s['seed']}'{checked}>")
            body.append(f"<label for='seed-{a}-{s['seed']}'>seed {s['seed']}</label>")
    only = " only" if len(sheets) == 1 else ""
    for s in sheets:
        path = escape(s["path"])
        body.append(
            f"<a class='sheet{only}' href='{path}'><img src='{path}' alt='{what}, training seed {s['seed']}' "
            "loading='lazy'></a>"
        )
    prompts = "; ".join(f"#{p['index']} seed {p['seed']}: {p['prompt']}" for p in g["prompts"])
    n_train = g.get("training", 0)
    train = (
        f"{n_train} training image(s) in the leaf."
        if n_train
        else "Training images not found (see the notes)."
    )
    return (
        f"<figure id='grid-{a}'><div class='seeds'>{''.join(body)}</div>"
        f"<figcaption><b>{escape(g['leaf'])}</b>, {escape(g['prompt_type'])} prompts. {train} "
        f"{escape(prompts)}</figcaption></figure>"
    )
