"""Image paths of a pairs table (data/table.py), confined to --images_dir.

A table names its images by id (<images_dir>/<id>.jpg, .jpeg or .png, the first that exists) or by a
relative path in its `scene_image` / `product_image` columns. A table may come from someone else, so
no value may make the build read a file elsewhere on the build host (the bytes would end up in the
TFRecords, and the missing / corrupt counts would tell which paths exist):

  - a relative path must be relative: not absolute, no `..` component, no `scheme://`;
  - on a local --images_dir the path, symlinks resolved (os.path.realpath), must stay inside the
    resolved --images_dir: a symlink inside it that points elsewhere is refused too (point
    --images_dir at a directory that holds the files, or the common parent of their real place).

A refused path is counted as "outside_images_dir" before anything looks at the file it names, so
the count is the same whether that file exists or not. A path cell with a NUL byte or over
MAX_PATH characters names no file: "bad_row".
"""

from __future__ import annotations

import os

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OUTSIDE = "outside_images_dir"
MAX_PATH = 4096


def _relative_ok(relative: str) -> bool:
    if os.path.isabs(relative) or "://" in relative or relative.startswith(("/", "\\")):
        return False
    return ".." not in relative.replace("\\", "/").split("/")


class ImagePaths:
    """(role, id) -> image path, resolved while reading; picklable (the Beam plan step calls it)."""

    def __init__(self, images_dir: str):
        self.images_dir = images_dir
        self.paths: dict[tuple[str, str], str] = {}
        self._remote = "://" in images_dir
        self._root = None if self._remote else os.path.realpath(images_dir)
        self._dirs: dict[str, bool] = {}  # directory -> whether its real path is inside the root
        # Pixel boxes: scene images not found while reading their sizes, {"count", "first"} (sorted).
        self.missing_scenes = {"count": 0, "first": None}

    def _inside(self, real: str) -> bool:
        return os.path.commonpath([self._root, real]) == self._root

    def confined(self, path: str) -> bool:
        """Whether `path` (under images_dir by construction) resolves inside it. One realpath per
        directory, one lstat per file: a million images in one directory stay cheap."""
        if self._remote:
            return True
        directory = os.path.dirname(path)
        if directory not in self._dirs:
            self._dirs[directory] = self._inside(os.path.realpath(directory))
        if not self._dirs[directory]:
            return False
        return not os.path.islink(path) or self._inside(os.path.realpath(path))

    def resolve(self, role: str, image_id: str, relative: str) -> tuple[str | None, str | None]:
        """(path, None), or (None, why not): "outside_images_dir" or "bad_row" (see the module doc)."""
        if relative:
            if "\0" in relative or len(relative) > MAX_PATH:
                return None, "bad_row"
            path = os.path.join(self.images_dir, relative)
            return (path, None) if _relative_ok(relative) and self.confined(path) else (None, OUTSIDE)
        key = (role, image_id)
        if key not in self.paths:
            candidates = [os.path.join(self.images_dir, image_id + s) for s in IMAGE_SUFFIXES]
            found = candidates[0] if self._remote else None
            for candidate in candidates if found is None else ():
                if not self.confined(candidate):
                    return None, OUTSIDE
                if os.path.isfile(candidate):
                    found = candidate
                    break
            self.paths[key] = found or candidates[0]  # missing: the image check counts it
        return self.paths[key], None

    def __call__(self, image_id: str, role: str) -> str:
        return self.paths[(role, image_id)]
