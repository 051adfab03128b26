"""``make screenshots``: every HTML page of the rendered book (full height) and every PDF page as PNGs.

The book is the product, so every change to it is looked at as a reader sees it: HTML pages are
opened from disk (``file://``, as many readers open them) in headless Chromium, PDF pages are
rasterised with poppler's ``pdftoppm``. Output: ``_book/screenshots/``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from tqdm import tqdm

from lib.book.browser import Browser


def html_pages(book_dir: Path) -> list[Path]:
    """The book's own pages (not Quarto's site_libs or earlier screenshots)."""
    return sorted(p for p in book_dir.rglob("*.html")
                  if "site_libs" not in p.parts and "screenshots" not in p.parts)


def screenshot_html(book_dir: Path, out_dir: Path, width: int = 1280) -> list[Path]:
    shots = []
    with Browser(width=width) as browser:
        for page in tqdm(html_pages(book_dir), desc="HTML pages", unit="page"):
            name = "html-" + "-".join(page.relative_to(book_dir).with_suffix("").parts) + ".png"
            browser.open(page.resolve().as_uri())
            shots.append(browser.screenshot(out_dir / name))
    return shots


def screenshot_pdf(book_dir: Path, out_dir: Path, dpi: int = 70) -> list[Path]:
    if shutil.which("pdftoppm") is None:
        raise SystemExit("pdftoppm not found: install Debian's poppler-utils")
    for pdf in sorted(book_dir.glob("*.pdf")):  # a book has one PDF; its pages become pdf-NN.png
        subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(pdf), str(out_dir / "pdf")], check=True)
    return sorted(out_dir.glob("pdf-*.png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.book.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("book_dir", nargs="?", default="_book", type=Path)
    args = parser.parse_args(argv)
    if not any(args.book_dir.glob("*.html")):
        raise SystemExit(f"{args.book_dir}/ holds no rendered book: run `make report` first")
    out_dir = args.book_dir / "screenshots"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    html = screenshot_html(args.book_dir, out_dir)
    pdf = screenshot_pdf(args.book_dir, out_dir)
    print(f"{len(html)} HTML pages and {len(pdf)} PDF pages in {out_dir}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
