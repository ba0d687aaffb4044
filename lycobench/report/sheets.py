"""Contact sheets: images composed into one PNG with labels (PIL only, no matplotlib).

Cells are at least ``MIN_CELL`` pixels: smaller images (the world's 32 px) are enlarged by a whole factor
with nearest-neighbour sampling, so every pixel stays a sharp square; larger ones are shown at their own
size up to ``MAX_CELL`` and reduced with Lanczos beyond it.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..store import atomic_write_bytes
from .plots import Skip

MIN_CELL = 64
MAX_CELL = 128
PAD, GAP, LABEL_W, HEAD_H, FONT_SIZE = 6, 2, 190, 20, 13
MIN_TRAINING = 8  # the training row shows at least this many images (when the leaf has them)


def cell_size(side: int) -> int:
    """The cell side for images of ``side`` pixels: a whole multiple of small images, at least MIN_CELL."""
    if side < MIN_CELL:
        return side * -(-MIN_CELL // side)
    return min(side, MAX_CELL)


def _thumb(path: Path, size: int):
    """The image as a ``size`` square: a whole-factor enlargement pixel for pixel (nearest neighbour),
    anything else through Lanczos, a non-square image centre-cropped (as training crops it)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if (w, h) == (size, size):
            return im.copy()
        if w == h and w < size and size % w == 0:
            return im.resize((size, size), Image.Resampling.NEAREST)
        return ImageOps.fit(im, (size, size), Image.Resampling.LANCZOS)


def image_grid(
    base: list[Path | None],
    columns: list[str],
    rows: list[tuple[str, list[list[Path | None]]]],
    path: Path,
    training: list[Path] | None = None,
    title: str = "",
) -> None:
    """A contact sheet: the leaf's training images on top (as many as the sheet is wide), the base model's
    images, then one row per configuration with one cell per checkpoint column, each cell a strip of
    images (the same prompt indices, hence the same generation seeds, everywhere). A missing image is an
    empty box. ``title`` (e.g. the training seed) heads the configurations' label column."""
    from PIL import Image, ImageDraw, ImageFont

    training = training or []
    generated = [p for p in [*base, *(p for _, cells in rows for c in cells for p in c)] if p]
    sample = [p for p in generated if Path(p).is_file()] or [p for p in training if Path(p).is_file()]
    if not sample:
        raise Skip("no images")
    with Image.open(sample[0]) as im:  # cells follow the generated images' size
        thumb = cell_size(min(im.size))
    font = ImageFont.load_default(size=FONT_SIZE)
    per = max([len(base), 1] + [len(imgs) for _, cells in rows for imgs in cells])
    cell_w = per * thumb + (per - 1) * GAP
    x0 = LABEL_W + PAD
    W = x0 + max(1, len(columns)) * (cell_w + PAD)
    if training:
        W = max(W, x0 + min(len(training), MIN_TRAINING) * (thumb + GAP) + PAD)
        shown = training[: max(1, (W - x0 - PAD + GAP) // (thumb + GAP))]
    else:
        shown = []
    band = thumb + PAD
    H = PAD + (band if shown else 0) + band + HEAD_H + len(rows) * band + PAD
    sheet = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(sheet)

    def label(y: int, text: str) -> None:
        while text and draw.textlength(text, font=font) > LABEL_W - 8:
            text = text[:-2] + "…"
        draw.text((4, y + thumb // 2 - FONT_SIZE // 2), text, fill="black", font=font)

    def strip(x: int, y: int, imgs: list[Path | None]) -> None:
        for k, p in enumerate(imgs):
            box = (x + k * (thumb + GAP), y)
            if p is None or not Path(p).is_file():
                draw.rectangle([box, (box[0] + thumb - 1, box[1] + thumb - 1)], outline="#cccccc")
                continue
            sheet.paste(_thumb(Path(p), thumb), box)

    y = PAD
    if shown:
        label(y, f"training images ({len(shown)} of {len(training)})")
        strip(x0, y, shown)
        y += band
    label(y, "base model (step 0)")
    strip(x0, y, base)
    y += band
    draw.line([(0, y - PAD // 2), (W, y - PAD // 2)], fill="#999999")
    if title:
        draw.text((4, y + 3), title, fill="black", font=font)
    for j, col in enumerate(columns):
        draw.text((x0 + j * (cell_w + PAD), y + 3), col, fill="black", font=font)
    y += HEAD_H
    for text, cells in rows:
        label(y, text)
        for j, imgs in enumerate(cells):
            strip(x0 + j * (cell_w + PAD), y, imgs)
        y += band
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", compress_level=6)  # optimize=True: seconds per sheet for ~5% less
    atomic_write_bytes(path, buf.getvalue())
