"""`python -m lycobench validate <concept-folder>...` (the input check): check concept folders and print every problem.

Runs the same validation as a sweep's preflight (lycobench.data), without loading any model. Exit
status: 0 when the folders are usable (warnings and notes may still be printed), 1 when there are
problems, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys

from .data import check_concepts

DESCRIPTION = """Check concept folders (concept.yaml, images, .txt captions) and print every problem at once,
each naming its file and the fix. Problems stop a training run; warnings and notes do not (notes list the
conversions the image policy applies: EXIF rotation, alpha on white, 16-bit to 8-bit, other modes to RGB)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lycobench validate", description=DESCRIPTION)
    parser.add_argument("folders", nargs="+", help="concept folders, or names under the project's concepts/")
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems and warnings only")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on usage errors
        return int(e.code or 0)
    concepts, report = check_concepts(args.folders)
    sections = [("problem", report.problems), ("warning", report.warnings)]
    if not args.quiet:
        sections.append(("note", report.notes))
    for kind, lines in sections:
        if lines:
            print(f"{len(lines)} {kind}(s):")
            for line in lines:
                print(f"  - {line}")
    n_items = sum(c.n_images for c in concepts)
    status = "FAILED" if report.problems else "OK"
    print(
        f"{status}: {len(args.folders)} folder(s), {report.n_images} image(s) seen, {n_items} usable, "
        f"{len(report.problems)} problem(s), {len(report.warnings)} warning(s)"
    )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
