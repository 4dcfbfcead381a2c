"""Importing images for annotation: each file is checked with Pillow, stored by SHA-256 and put
in an assigned set; importing the same folder again adds nothing."""

from __future__ import annotations

import dataclasses
import os

from .db import Database
from .store import BlobStore, sha256_file

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


@dataclasses.dataclass
class ImportReport:
    added: int = 0  # new to the set
    already: int = 0  # in the set before
    skipped: list[str] = dataclasses.field(default_factory=list)  # "path: why"


def import_images(db: Database, store: BlobStore, folder: str, set_name: str) -> ImportReport:
    """Import every image file directly in ``folder`` (sorted by name: the set's order)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder")
    report = ImportReport()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or not name.lower().endswith(EXTENSIONS):
            continue
        try:
            with PILImage.open(path) as im:
                im.verify()
            with PILImage.open(path) as im:
                fmt = (im.format or "").lower()
                width, height = im.size
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            report.skipped.append(f"{path}: not a readable image ({exc})")
            continue
        if fmt not in MEDIA_TYPES:
            report.skipped.append(f"{path}: image format {fmt or 'unknown'!r} is not served (png, jpeg, webp, gif)")
            continue
        sha = store.put_file(path, sha256_file(path))
        _, new = db.add_image(sha, format=fmt, width=width, height=height, size_bytes=os.path.getsize(path),
                              source_name=name, set_name=set_name)
        if new:
            report.added += 1
        else:
            report.already += 1
    return report


__all__ = ["EXTENSIONS", "MEDIA_TYPES", "ImportReport", "import_images"]
