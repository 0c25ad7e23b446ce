"""`voc_xml`: a user's own detection data in a Pascal VOC-style folder.

    ds = jaxcv.data.load("voc_xml", "train", root="my_voc")

Layout (as VOCdevkit's `VOC2007/`):

    root/ImageSets/Main/{split}.txt   one file stem a line (the first word of each line)
    root/Annotations/{stem}.xml       <filename>, <object>s: <name>, <difficult>, <bndbox>
    root/JPEGImages/...               the image: the XML's <filename>, else {stem}.jpg

`split` is any name with a file `ImageSets/Main/{split}.txt` (`train`, `val`, `trainval`,
`test`, ...). Examples follow the example interface of `docs/conventions.md`, keys as the
catalog's `voc/2007` (`catalog.EXAMPLE_KEYS`):
- `image`: read with PIL, RGB float32 `[H, W, 3]` in [0, 1] (`coco_json.read_image`).
- `image_id`: the stem's index (0-based) in the split file, int32: stable while that file
  is. `ds.stems[image_id]` gives the file stem back (and `ds.image_files[image_id]` the
  image path).
- `boxes`: VOC's `<bndbox>` holds 1-based pixel indices, both corners inclusive. As
  detectron2's `load_voc_instances` (`bbox[0] -= 1.0; bbox[1] -= 1.0`), boxes are
  `(xmin - 1, ymin - 1, xmax, ymax)` float32: jaxcv's continuous pixel coordinates, in which
  the box covers exactly the annotated pixels. (The tfds catalog reader `voc/2007` keeps the
  file's numbers unshifted, as VOC's own `voc_eval.py`; the two differ by 1 in x1, y1.)
  Nothing is clipped or dropped here: the pipeline drops and counts boxes that are not
  finite, inverted, empty or outside the image.
- `classes` 1..C: `class_names[c - 1]` names class c. `class_names=None` (default) infers
  them from every XML in `Annotations/` (not only the split's, so every split gets the same
  classes): VOC's 20 (`catalog.VOC_CLASS_NAMES`, in VOC's order) when every name found is
  one of them, else the sorted names found. Pass `class_names=(...)` to fix them; an
  object named otherwise is then an error.
- `difficult` bool (`<difficult>`, 0 where absent), `iscrowd` (all False), `area` float32
  (box area `(x2 - x1) * (y2 - y1)` of the boxes above, i.e. VOC's `(w + 1) * (h + 1)`).

Errors: the split file and its XMLs are read when the data set is loaded; a bad folder is a
`DataFileError` (a ValueError) naming the file and the problem: a missing root, split file
(listing the splits there), XML or image file, malformed XML (with the parser's message),
an object without `<name>` or with a `<bndbox>` that is not four numbers, a name not in
`class_names`. An image that fails to decode later is a `CorruptExampleError` naming it,
which the pipeline counts and replaces.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np

from jaxcv.data import catalog
from jaxcv.data.base import check_bool, check_int, check_keys, check_path
from jaxcv.data.coco_json import DataFileError, read_image
from jaxcv.data.example_sets import CachedSource, KeySelect
from jaxcv.data.pipeline import ExampleDataset
from jaxcv.data.registry import register

EXAMPLE_KEYS = catalog.EXAMPLE_KEYS["voc/2007"]
_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def parse_xml(path: str) -> dict:
  """One VOC annotation file -> `{"filename": str | None, "objects": [(name, difficult,
  (xmin, ymin, xmax, ymax))]}` with the file's numbers; DataFileError naming the file."""
  if not os.path.isfile(path):
    raise DataFileError(f"annotation file {path} does not exist")
  try:
    root = ET.parse(path).getroot()
  except ET.ParseError as e:
    raise DataFileError(f"annotation file {path} is not well-formed XML: {e}") from None
  except OSError as e:
    raise DataFileError(f"annotation file {path} cannot be read: {e}") from None
  objects = []
  for k, obj in enumerate(root.findall("object")):
    where = f"annotation file {path}: object {k}"
    name = (obj.findtext("name") or "").strip()
    if not name:
      raise DataFileError(f"{where} has no <name>")
    text = (obj.findtext("difficult") or "0").strip()
    try:
      difficult = bool(int(float(text)))
    except ValueError:
      raise DataFileError(f"{where} ({name}): <difficult> must be 0 or 1, got {text!r}"
                          ) from None
    box = obj.find("bndbox")
    if box is None:
      raise DataFileError(f"{where} ({name}) has no <bndbox>")
    try:
      coords = tuple(float(box.findtext(t)) for t in _BOX_TAGS)
    except (TypeError, ValueError):
      raise DataFileError(f"{where} ({name}): <bndbox> needs numbers in "
                          f"{', '.join(f'<{t}>' for t in _BOX_TAGS)}, got "
                          f"{[box.findtext(t) for t in _BOX_TAGS]}") from None
    objects.append((name, difficult, coords))
  filename = (root.findtext("filename") or "").strip() or None
  return {"filename": filename, "objects": objects}


def _split_stems(root: str, split: str) -> tuple[str, list[str]]:
  main = os.path.join(root, "ImageSets", "Main")
  path = os.path.join(main, f"{split}.txt")
  if not split or os.path.basename(split) != split or not os.path.isfile(path):
    known = sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt")) \
        if os.path.isdir(main) else []
    raise DataFileError(f"split file {path} does not exist (voc_xml split {split!r}); "
                        f"splits in {main}: {known}")
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise DataFileError(f"split file {path} cannot be read: {e}") from None
  stems, seen = [], {}
  for line_no, line in enumerate(lines, 1):
    words = line.split()
    if not words:
      continue
    if words[0] in seen:
      raise DataFileError(f"split file {path}: {words[0]!r} on line {line_no} is already "
                          f"on line {seen[words[0]]}")
    seen[words[0]] = line_no
    stems.append(words[0])
  if not stems:
    raise DataFileError(f"split file {path} lists no images")
  return path, stems


def infer_class_names(names: set[str]) -> tuple[str, ...]:
  """VOC's 20 names when `names` are all VOC's, else `names` sorted."""
  if names <= set(catalog.VOC_CLASS_NAMES):
    return tuple(catalog.VOC_CLASS_NAMES)
  return tuple(sorted(names))


class VOCSource:
  """Random-access examples of one split: `len(src)`, `src[i] -> example` (image read on
  access, objects parsed when built)."""

  def __init__(self, files: list[str], objects: list[dict], name: str):
    self.files, self.objects, self.name = files, objects, name

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    i = int(i)
    if not 0 <= i < len(self.files):
      raise IndexError(f"{self.name} has {len(self.files)} images; asked for {i}")
    ex = {"image": read_image(self.files[i]), "image_id": np.int32(i)}
    ex.update({k: v.copy() for k, v in self.objects[i].items()})
    return ex


@register("voc_xml")
def load_voc_xml(split: str, *, root: str | None = None,
                 class_names: Sequence[str] | None = None,
                 keys: Sequence[str] | None = None, max_boxes: int = 100,
                 cache: bool = False) -> ExampleDataset:
  """Split `split` of the VOC-style folder `root` as an `ExampleDataset` (module docstring).

  Args:
    root: the folder holding `ImageSets/Main`, `Annotations` and `JPEGImages`.
    class_names: the class names, class c at c - 1; None: inferred (module docstring).
    keys: labels to keep (default all: `EXAMPLE_KEYS`); `image` and `image_id` always.
    max_boxes: padded size of the per-object arrays (>= 1).
    cache: keep each example in memory after its first read (`example_sets.CachedSource`).

  The data set has `class_counts` (`classes`: C), `class_names`, `stems` and `image_files`
  (of image_id i at i).
  """
  name = "voc_xml"
  root = check_path(root, "voc_xml: root (data.root)")
  if root is None:
    raise ValueError("voc_xml needs root= (the folder with ImageSets/Main, Annotations, "
                     "JPEGImages)")
  if not os.path.isdir(root):
    raise DataFileError(f"voc_xml root {root} is not a directory")
  if class_names is not None:
    if isinstance(class_names, (str, bytes)) or not all(
        isinstance(c, str) and c for c in class_names):
      raise ValueError(f"voc_xml: class_names must be a list of names, got {class_names!r}")
    class_names = tuple(class_names)
    if len(set(class_names)) != len(class_names):
      raise ValueError(f"voc_xml: class_names repeat a name: {class_names}")
  if not isinstance(split, str):
    raise ValueError(f"voc_xml: split must be a str, got {split!r}")
  keys = check_keys(name, keys, EXAMPLE_KEYS)
  max_boxes = check_int(max_boxes, "voc_xml: max_boxes (data.max_boxes)", 1)
  cache = check_bool(cache, "voc_xml: cache (data.cache)")

  split_file, stems = _split_stems(root, split)
  ann_dir, img_dir = os.path.join(root, "Annotations"), os.path.join(root, "JPEGImages")
  parsed = {stem: parse_xml(os.path.join(ann_dir, f"{stem}.xml")) for stem in stems}
  if class_names is None:
    found = set()
    others = sorted(f for f in os.listdir(ann_dir) if f.endswith(".xml")
                    and f[:-4] not in parsed)
    for p in [*parsed.values(), *(parse_xml(os.path.join(ann_dir, f)) for f in others)]:
      found.update(o[0] for o in p["objects"])
    class_names = infer_class_names(found)
  class_of = {c: k + 1 for k, c in enumerate(class_names)}

  files, objects = [], []
  for stem in stems:
    p, xml_path = parsed[stem], os.path.join(ann_dir, f"{stem}.xml")
    candidates = list(dict.fromkeys(
        [*([os.path.join(img_dir, p["filename"])] if p["filename"] else []),
         os.path.join(img_dir, f"{stem}.jpg")]))
    image = next((c for c in candidates if os.path.isfile(c)), None)
    if image is None:
      raise DataFileError(f"image file {' or '.join(candidates)} does not exist (image "
                          f"{stem!r} of {split_file}, annotated in {xml_path})")
    unknown = [o[0] for o in p["objects"] if o[0] not in class_of]
    if unknown:
      raise DataFileError(f"annotation file {xml_path}: object name {unknown[0]!r} is not "
                          f"in class_names {list(class_names)}")
    n = len(p["objects"])
    b = np.asarray([o[2] for o in p["objects"]], np.float64).reshape(n, 4)
    b[:, :2] -= 1.0  # 1-based inclusive pixel indices -> continuous coordinates
    boxes = b.astype(np.float32)
    area = ((boxes[:, 2].astype(np.float64) - boxes[:, 0])
            * (boxes[:, 3].astype(np.float64) - boxes[:, 1])).astype(np.float32)
    files.append(image)
    objects.append({"boxes": boxes,
                    "classes": np.asarray([class_of[o[0]] for o in p["objects"]],
                                          np.int32).reshape(n),
                    "difficult": np.asarray([o[1] for o in p["objects"]], bool).reshape(n),
                    "iscrowd": np.zeros(n, bool), "area": area})

  src = KeySelect(VOCSource(files, objects, f"{name} {split_file}"), keys)
  ds = ExampleDataset(CachedSource(src) if cache else src, len(class_names), name, split,
                      max_boxes=max_boxes)
  ds.class_counts = {"classes": len(class_names)}
  ds.class_names = tuple(class_names)
  ds.stems = tuple(stems)
  ds.image_files = tuple(files)
  return ds
