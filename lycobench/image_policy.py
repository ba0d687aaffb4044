"""How training images are read: the image policy, and the check of one image file.

Image policy (``to_rgb``): the EXIF orientation is applied; transparency (RGBA, LA, PA, P with a
transparent colour) is composited on white; 16-bit greyscale is scaled to 8 bits by its bit depth
(65535 -> 255, whatever the largest value), float greyscale is clipped to 0-255; every other mode
(L, 1, P, CMYK, YCbCr, ...) is converted by PIL. The file's content decides its format, not its extension.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FORMAT_OF_EXT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}
MIN_SIDE = 16
MAX_ASPECT = 3.0  # training centre-crops a square: beyond 3:1 it keeps less than a third of the image
IMAGE_POLICY = (
    "rgb-v2: exif transpose; alpha on white; 16-bit scaled to 8-bit by bit depth; other modes by PIL"
)

Finding = tuple[str, str]  # ("problem" | "warning" | "note", one line naming the file and the fix)


def to_rgb(im):
    """The image policy (module docstring): any PIL image -> an 8-bit RGB image, upright."""
    import numpy as np
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode != "F":  # 16-bit data by the file's bit depth, whatever its values (PNG greyscale-16
            arr = arr / 257.0  # opens as I;16 or I): 200 of 65535 is dark, not 8-bit 200
        im = Image.fromarray(np.clip(arr.round(), 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im.convert("RGB")


def inspect_image(path: Path) -> tuple[str | None, list[Finding]]:
    """Check one image: the hash of its pixels after the policy (None if unreadable), and the findings."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
        with Image.open(path) as im:
            im.load()
            mode, orientation = im.mode, im.getexif().get(0x0112, 1)
            rgb = to_rgb(im)
    except Exception as e:  # PIL raises many types for broken files
        return None, [
            ("problem", f"{path}: unreadable image ({type(e).__name__}: {e}); replace or remove it")
        ]
    findings: list[Finding] = []
    expected = FORMAT_OF_EXT[path.suffix.lower()]
    if fmt != expected:
        findings.append(
            ("warning", f"{path}: holds {fmt} data under a {path.suffix} name; it is read as {fmt} "
             "(rename it to silence this)")
        )  # fmt: skip
    if mode != "RGB":
        how = "alpha composited on white" if "A" in mode or mode == "P" else "converted"
        findings.append(("note", f"{path}: {mode} image -> RGB ({how})"))
    if orientation not in (1, None):
        findings.append(("note", f"{path}: EXIF orientation {orientation} applied (image rotated upright)"))
    w, h = rgb.size
    if min(w, h) < MIN_SIDE:
        findings.append(
            ("problem", f"{path}: image is {w}x{h}, below the {MIN_SIDE}-pixel minimum side; remove it or "
             "use a larger one")
        )  # fmt: skip
    elif max(w, h) / min(w, h) > MAX_ASPECT:
        findings.append(
            ("warning", f"{path}: aspect ratio {max(w, h) / min(w, h):.1f}:1; training centre-crops a square "
             f"and keeps only {min(w, h) / max(w, h):.0%} of it (crop the image to the subject)")
        )  # fmt: skip
    return hashlib.sha256(f"{w}x{h}:".encode() + rgb.tobytes()).hexdigest(), findings
