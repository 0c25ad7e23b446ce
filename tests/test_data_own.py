"""Users' own detection data: `coco_json` (a COCO-format file) and `voc_xml` (a VOC folder).

Each test writes a tiny data set under tmp_path (48x64 PNGs made with NumPy and PIL, a COCO
json, a VOC folder) and checks what the loaders give against what was written: boxes,
classes and the category mapping, ids, masks (against pycocotools' annToMask), keypoints,
the pipeline's batching as training and evaluation use it, and every bad-file error.
"""
import json
import re

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh
from PIL import Image

import jaxcv.data as data_lib
from jaxcv.data import catalog, export, pipeline
from jaxcv.data.coco_json import DataFileError
from jaxcv.train import input_pipeline

H, W = 48, 64
OUTSIDE = "zero-area or out-of-image boxes dropped"


def _png(path, seed):
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path)
  return pixels


def _uncompressed_rle(mask):
  """COCO's uncompressed RLE of a bool mask, written out by hand (column-major runs,
  starting with zeros): independent of jaxcv's and pycocotools' encoders."""
  flat = mask.ravel(order="F").astype(int)
  counts, value, run = [], 0, 0
  for v in flat:
    if v == value:
      run += 1
    else:
      counts.append(run)
      value, run = v, 1
  counts.append(run)
  return {"size": [H, W], "counts": counts}


def _crowd_mask():
  m = np.zeros((H, W), bool)
  m[20:40, 5:25] = True
  m[22:26, 30:36] = True
  return m


def _coco_dict():
  from pycocotools import mask as mask_utils

  blob = np.zeros((H, W), bool)
  blob[3:12, 40:58] = True
  compressed = mask_utils.encode(np.asfortranarray(blob.astype(np.uint8)))
  compressed["counts"] = compressed["counts"].decode("ascii")
  hw = {"height": H, "width": W}
  return {
      "images": [{"id": 101, "file_name": "a.png", **hw},
                 {"id": 55, "file_name": "sub/b.png", **hw},
                 {"id": 9, "file_name": "c.png", **hw}],
      # unsorted ids: classes follow the sorted ids 3 (ant) -> 1, 7 (cat) -> 2, 12 (dog) -> 3
      "categories": [{"id": 7, "name": "cat", "keypoints": ["nose", "tail"]},
                     {"id": 3, "name": "ant"}, {"id": 12, "name": "dog"}],
      "annotations": [
          {"id": 1, "image_id": 101, "category_id": 7, "bbox": [10, 5, 20, 20], "area": 400,
           "iscrowd": 0, "segmentation": [[10, 5, 30, 5, 30, 25, 10, 25]],
           "keypoints": [12, 6, 2, 28, 24, 1], "num_keypoints": 2},
          {"id": 2, "image_id": 101, "category_id": 3, "bbox": [2, 10, 58.5, 30.25],
           "area": 350.5, "iscrowd": 0,
           "segmentation": [[40, 10, 60, 10, 50, 40], [2, 30, 8, 30, 8, 40, 2, 40]]},
          # partly outside the image (x2 = 80 > 64): clipped by the pipeline, kept
          {"id": 3, "image_id": 101, "category_id": 12, "bbox": [50, 40, 30, 20],
           "area": 91, "iscrowd": 0, "segmentation": [[50, 40, 63, 40, 63, 47, 50, 47]]},
          {"id": 4, "image_id": 55, "category_id": 12, "bbox": [5, 20, 31, 20],
           "area": float(_crowd_mask().sum()), "iscrowd": 1,
           "segmentation": _uncompressed_rle(_crowd_mask())},
          {"id": 5, "image_id": 55, "category_id": 3, "bbox": [40, 3, 18, 9],
           "area": float(blob.sum()), "iscrowd": 0, "segmentation": compressed},
          # wholly outside the image: the pipeline drops and counts it, the loader keeps it
          {"id": 6, "image_id": 55, "category_id": 7, "bbox": [100, 10, 5, 5], "area": 25,
           "iscrowd": 0, "segmentation": [[100, 10, 105, 10, 105, 15]],
           "keypoints": [0, 0, 0, 0, 0, 0], "num_keypoints": 0},
      ]}


def _write_coco(tmp_path, gt=None):
  images = tmp_path / "images"
  pixels = {name: _png(images / name, seed)
            for seed, name in enumerate(("a.png", "sub/b.png", "c.png"))}
  path = tmp_path / "instances.json"
  path.write_text(json.dumps(_coco_dict() if gt is None else gt))
  return path, images, pixels


def _coco(path, images, split="train", **kw):
  return data_lib.load("coco_json", split, annotations=str(path), images=str(images), **kw)


def _mesh():
  return Mesh(np.asarray(jax.devices()[:1]), ("data",))


def test_coco_examples_are_what_the_file_says(tmp_path):
  from pycocotools.coco import COCO

  path, images, pixels = _write_coco(tmp_path)
  gt = _coco_dict()
  ds = _coco(path, images, "any-name", keys=("boxes", "classes", "iscrowd", "area", "masks",
                                             "keypoints"))
  assert len(ds) == 3 and ds.num_classes == 3 and ds.class_counts == {"classes": 3}
  coco = COCO(str(path))
  for i, (im, file) in enumerate(zip(gt["images"], ("a.png", "sub/b.png", "c.png"))):
    ex = ds.source[i]
    assert sorted(ex) == ["area", "boxes", "classes", "image", "image_id", "iscrowd",
                          "keypoints", "masks"]
    assert ex["image_id"] == im["id"] and ex["image_id"].dtype == np.int32
    np.testing.assert_array_equal(ex["image"], pixels[file].astype(np.float32) / 255)
    assert ex["image"].dtype == np.float32 and ds.image_files[i] == str(images / file)
    anns = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
    n = len(anns)
    want = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                    np.float32).reshape(n, 4)
    np.testing.assert_array_equal(ex["boxes"], want)
    assert ex["boxes"].dtype == np.float32 and ex["classes"].dtype == np.int32
    # the mapping both ways: class -> COCO id, COCO id -> class
    np.testing.assert_array_equal(ds.category_ids[ex["classes"] - 1],
                                  [a["category_id"] for a in anns])
    assert [ds.class_of_category[a["category_id"]] for a in anns] == ex["classes"].tolist()
    np.testing.assert_array_equal(ex["iscrowd"], [bool(a["iscrowd"]) for a in anns])
    np.testing.assert_array_equal(ex["area"], np.float32([a["area"] for a in anns]))
    assert ex["masks"].shape == (n, H, W) and ex["masks"].dtype == bool
    for j, a in enumerate(anns):
      np.testing.assert_array_equal(ex["masks"][j], coco.annToMask(coco.anns[a["id"]]) > 0,
                                    err_msg=f"annotation {a['id']}")
    assert ex["keypoints"].shape == (n, 2, 3) and ex["keypoints"].dtype == np.float32
  np.testing.assert_array_equal(ds.category_ids, [3, 7, 12])
  assert ds.class_names == ("ant", "cat", "dog") and ds.keypoint_names == ("nose", "tail")
  # COCO keypoints are pixel indices: +0.5 to jaxcv's continuous coordinates; unlabelled 0
  np.testing.assert_array_equal(ds.source[0]["keypoints"],
                                [[[12.5, 6.5, 2], [28.5, 24.5, 1]], np.zeros((2, 3)),
                                 np.zeros((2, 3))])
  np.testing.assert_array_equal(ds.source[1]["keypoints"], np.zeros((3, 2, 3)))
  assert ds.source[0]["masks"][1].sum() > 0 and ds.source[1]["masks"][0].sum() == \
      _crowd_mask().sum()


def test_coco_default_keys_and_masks_only_on_request(tmp_path):
  path, images, _ = _write_coco(tmp_path)
  ex = _coco(path, images).source[0]
  assert sorted(ex) == ["area", "boxes", "classes", "image", "image_id", "iscrowd",
                        "keypoints"]
  ex = _coco(path, images, keys=("boxes",)).source[1]
  assert sorted(ex) == ["boxes", "image", "image_id"]
  gt = _coco_dict()
  for a in gt["annotations"]:
    a.pop("keypoints", None)
    a.pop("area")
    a["segmentation"] = []  # a detection-only file
  path.write_text(json.dumps(gt))
  ds = _coco(path, images)
  assert "keypoints" not in ds.source[0] and "masks" not in ds.source[0]
  # no `area` in the file: the bbox's w * h
  np.testing.assert_array_equal(ds.source[0]["area"], np.float32([400, 58.5 * 30.25, 600]))
  with pytest.raises(DataFileError, match=re.escape(str(path)) + ".*no segmentation"):
    _coco(path, images, keys=("masks",))
  with pytest.raises(DataFileError, match=re.escape(str(path)) + ".*keypoints"):
    _coco(path, images, keys=("keypoints",))
  with pytest.raises(ValueError, match="has no label.*'mask'"):
    _coco(path, images, keys=("mask",))


def test_coco_batches_through_the_training_and_evaluation_path(tmp_path):
  path, images, _ = _write_coco(tmp_path)
  before = pipeline.STATS[OUTSIDE]
  ds = _coco(path, images, keys=("boxes", "classes", "masks", "keypoints"), max_boxes=4)
  b = ds.get(np.arange(3))
  assert pipeline.STATS[OUTSIDE] == before + 1  # annotation 6, wholly outside: dropped
  np.testing.assert_array_equal(b["image_id"], [101, 55, 9])
  np.testing.assert_array_equal(b["box_valid"].sum(axis=1), [3, 2, 0])
  np.testing.assert_array_equal(b["boxes"][0, 2], [50, 40, 64, 48])  # clipped to the image
  np.testing.assert_array_equal(b["classes"][1, :2], [3, 1])
  assert b["masks"].shape == (3, 4, H, W) and b["keypoints"].shape == (3, 4, 2, 3)

  # a config as the training loop gives it: one file per split, a resize to one shape
  config = ml_collections.ConfigDict({
      "name": "coco_json", "annotations": {"train": str(path), "validation": str(path)},
      "images": str(images), "eval_splits": ("validation",), "max_boxes": 4,
      "keys": ("boxes", "classes", "masks", "keypoints"),
      "augmentation": [("random_hflip", {"flip_pairs": [(0, 1)]})],
      "preprocess": [("resize_pad_to", {"size": 32})]})
  train, evals = data_lib.from_config(config)
  batches = input_pipeline.TrainBatches(train, 2, 0, 0, _mesh(), prefetch=0)
  batch = jax.device_get(next(batches))
  assert batch["image"].shape == (2, 32, 32, 3) and batch["masks"].shape == (2, 4, 32, 32)
  assert batch["boxes"].shape == (2, 4, 4) and batch["keypoints"].shape == (2, 4, 2, 3)
  assert set(batch["image_id"].tolist()) <= {101, 55, 9}
  seen = [jax.device_get(e) for e in input_pipeline.eval_batches(evals["validation"], 2,
                                                                   _mesh())]
  assert [e["example_valid"].tolist() for e in seen] == [[True, True], [True, False]]
  np.testing.assert_array_equal(np.concatenate([e["image_id"] for e in seen])[:3],
                                [101, 55, 9])
  with pytest.raises(ValueError, match="no split 'test'; known splits: \\['train'\\]"):
    data_lib.load("coco_json", "test", annotations={"train": str(path)}, images=str(images))


def test_coco_export_maps_back_to_the_original_category_ids(tmp_path):
  path, images, _ = _write_coco(tmp_path)
  ds = _coco(path, images, keys=("boxes", "classes"))
  out = export.to_coco(ds, batch_size=2, category_names=ds.class_names)
  assert [c["name"] for c in out["categories"]] == ["ant", "cat", "dog"]
  got = [(a["image_id"], int(ds.category_ids[a["category_id"] - 1]))
         for a in out["annotations"]]
  want = [(a["image_id"], a["category_id"]) for a in _coco_dict()["annotations"]
          if a["id"] != 6]  # the box outside the image is dropped
  assert got == want
  assert {i["id"] for i in out["images"]} == {101, 55, 9}


def _mutate(key, fn):
  def apply(gt):
    fn(gt[key])
    return gt
  return apply


@pytest.mark.parametrize("change, match", [
    (_mutate("annotations", lambda a: a.append({"id": 9, "image_id": 101, "category_id": 99,
                                                "bbox": [1, 1, 2, 2]})),
     "annotation 6 \\(id 9\\) has category id 99, which 'categories' does not list"),
    (_mutate("annotations", lambda a: a.append({"id": 9, "image_id": 77, "category_id": 3,
                                                "bbox": [1, 1, 2, 2]})),
     "annotation 6 \\(id 9\\) is on image id 77, which 'images' does not list"),
    (_mutate("annotations", lambda a: a[0].update(bbox=[1, 2, 3])), "bbox must be 4 numbers"),
    (_mutate("images", lambda i: i[1].update(id=101)), "image id 101 occurs more than once"),
    (_mutate("annotations", lambda a: a[0].update(keypoints=[1, 2, 2])),
     "annotation 5 \\(id 6\\) has 2 keypoints, an earlier annotation 1"),
])
def test_coco_bad_annotations_name_the_file(tmp_path, change, match):
  path, images, _ = _write_coco(tmp_path)
  path.write_text(json.dumps(change(_coco_dict())))
  with pytest.raises(DataFileError, match=re.escape(str(path)) + ".*" + match):
    _coco(path, images)


def test_coco_bad_files_name_the_file(tmp_path):
  path, images, _ = _write_coco(tmp_path)
  (images / "sub" / "b.png").unlink()
  with pytest.raises(DataFileError, match=re.escape(str(images / "sub" / "b.png"))
                     + " \\(image id 55 of .*\\) does not exist"):
    _coco(path, images)
  # without the check at load, the missing image is an unreadable example: replaced, counted
  ds = _coco(path, images, check_files=False)
  before = pipeline.STATS["unreadable examples replaced"]
  np.testing.assert_array_equal(ds.get(np.array([1]))["image_id"], [9])
  assert pipeline.STATS["unreadable examples replaced"] == before + 1
  (images / "c.png").write_bytes(b"not a png")
  with pytest.raises(pipeline.CorruptExampleError, match=re.escape(str(images / "c.png"))):
    ds.source[2]
  path.write_text('{"images": [')
  with pytest.raises(DataFileError, match=re.escape(str(path)) + " is not valid JSON: "
                     "Expecting value: line 1"):
    _coco(path, images)
  missing = tmp_path / "nope.json"
  with pytest.raises(DataFileError, match=re.escape(str(missing)) + " does not exist"):
    _coco(missing, images)
  with pytest.raises(ValueError, match="needs annotations="):
    data_lib.load("coco_json", "train")


# ------------------------------------------------------------------------------------ VOC


def _xml(filename, objects):
  objs = "".join(
      f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
      + (f"<difficult>{d}</difficult>" if d is not None else "")
      + "<bndbox>" + "".join(f"<{t}>{v}</{t}>" for t, v in
                             zip(("xmin", "ymin", "xmax", "ymax"), box)) + "</bndbox></object>"
      for name, d, box in objects)
  fn = f"<filename>{filename}</filename>" if filename else ""
  return (f"<annotation><folder>VOC</folder>{fn}<size><width>{W}</width><height>{H}</height>"
          f"<depth>3</depth></size>{objs}</annotation>")


VOC_OBJECTS = {
    "img_a": [("dog", 0, (11, 6, 30, 25)), ("person", 1, (1, 1, 64, 48))],
    # partly outside (kept, clipped) and wholly outside (dropped by the pipeline)
    "img_b": [("cat", None, (60, 40, 90, 47)), ("bird", 0, (70.5, 2, 80, 9))],
    "img_c": [("chair", 0, (5, 5, 9, 9))],
}


def _write_voc(root, objects=VOC_OBJECTS):
  (root / "ImageSets" / "Main").mkdir(parents=True)
  (root / "Annotations").mkdir()
  (root / "ImageSets" / "Main" / "train.txt").write_text("img_a\nimg_b\n\n")
  (root / "ImageSets" / "Main" / "val.txt").write_text("img_c\n")
  pixels = {}
  for seed, (stem, objs) in enumerate(objects.items()):
    if stem == "img_b":  # a real JPEG named as VOC does, and no <filename> in its XML
      _png(root / "JPEGImages" / "tmp.png", seed)
      Image.open(root / "JPEGImages" / "tmp.png").save(root / "JPEGImages" / f"{stem}.jpg")
      (root / "JPEGImages" / "tmp.png").unlink()
      pixels[stem] = np.asarray(Image.open(root / "JPEGImages" / f"{stem}.jpg").convert("RGB"))
      filename = None
    else:
      pixels[stem] = _png(root / "JPEGImages" / f"{stem}.png", seed)
      filename = f"{stem}.png"
    (root / "Annotations" / f"{stem}.xml").write_text(_xml(filename, objs))
  return pixels


def test_voc_examples_are_what_the_files_say(tmp_path):
  pixels = _write_voc(tmp_path)
  ds = data_lib.load("voc_xml", "train", root=str(tmp_path))
  assert ds.class_names == catalog.VOC_CLASS_NAMES and ds.num_classes == 20
  assert ds.stems == ("img_a", "img_b") and len(ds) == 2
  assert ds.image_files == (str(tmp_path / "JPEGImages" / "img_a.png"),
                            str(tmp_path / "JPEGImages" / "img_b.jpg"))
  for i, stem in enumerate(ds.stems):
    ex = ds.source[i]
    assert sorted(ex) == sorted(catalog.EXAMPLE_KEYS["voc/2007"])
    assert ex["image_id"] == i and ex["image_id"].dtype == np.int32
    np.testing.assert_array_equal(ex["image"], pixels[stem].astype(np.float32) / 255)
    objs = VOC_OBJECTS[stem]
    # 1-based inclusive pixel indices -> continuous coordinates (detectron2: x1, y1 - 1)
    want = np.array([[x1 - 1, y1 - 1, x2, y2] for _, _, (x1, y1, x2, y2) in objs], np.float32)
    np.testing.assert_array_equal(ex["boxes"], want)
    np.testing.assert_array_equal(
        ex["classes"], [catalog.VOC_CLASS_NAMES.index(name) + 1 for name, _, _ in objs])
    np.testing.assert_array_equal(ex["difficult"], [bool(d) for _, d, _ in objs])
    np.testing.assert_array_equal(ex["area"], (want[:, 2] - want[:, 0])
                                  * (want[:, 3] - want[:, 1]))
    assert not ex["iscrowd"].any()
  np.testing.assert_array_equal(ds.source[0]["boxes"][1], [0, 0, W, H])  # the whole image
  np.testing.assert_array_equal(ds.source[0]["classes"], [12, 15])  # dog, person

  # through the batching of training and evaluation
  before = pipeline.STATS[OUTSIDE]
  config = ml_collections.ConfigDict({"name": "voc_xml", "root": str(tmp_path),
                                      "eval_splits": ("val",), "max_boxes": 3})
  train, evals = data_lib.from_config(config)
  batch = jax.device_get(next(input_pipeline.TrainBatches(train, 2, 0, 0, _mesh(),
                                                          prefetch=0)))
  assert batch["image"].shape == (2, H, W, 3) and batch["difficult"].shape == (2, 3)
  b = train.get(np.arange(2))
  assert pipeline.STATS[OUTSIDE] == before + 2  # the bird, once per read
  np.testing.assert_array_equal(b["box_valid"].sum(axis=1), [2, 1])
  np.testing.assert_array_equal(b["boxes"][1, 0], [59, 39, W, 47])
  val = jax.device_get(next(input_pipeline.eval_batches(evals["val"], 2, _mesh())))
  np.testing.assert_array_equal(val["example_valid"], [True, False])
  np.testing.assert_array_equal(val["classes"][0, :1], [9])  # chair
  assert evals["val"].stems == ("img_c",)


def test_voc_class_names_inferred_from_every_split_or_given(tmp_path):
  objects = {"img_a": [("widget", 0, (1, 1, 5, 5))], "img_b": [("widget", 0, (2, 2, 6, 6))],
             "img_c": [("gadget", 0, (3, 3, 7, 7))]}
  _write_voc(tmp_path, objects)
  train = data_lib.load("voc_xml", "train", root=str(tmp_path))
  val = data_lib.load("voc_xml", "val", root=str(tmp_path))
  # inferred from all of Annotations/, so both splits agree though train has no gadget
  assert train.class_names == val.class_names == ("gadget", "widget")
  assert train.source[0]["classes"].tolist() == [2] and val.source[0]["classes"].tolist() == [1]
  given = data_lib.load("voc_xml", "train", root=str(tmp_path), class_names=["widget"],
                        keys=("boxes", "classes"))
  assert given.num_classes == 1 and sorted(given.source[1]) == ["boxes", "classes", "image",
                                                                "image_id"]
  xml = tmp_path / "Annotations" / "img_c.xml"
  with pytest.raises(DataFileError, match=re.escape(str(xml)) + ": object name 'gadget' is "
                     "not in class_names \\['widget'\\]"):
    data_lib.load("voc_xml", "val", root=str(tmp_path), class_names=("widget",))


def test_voc_bad_files_name_the_file(tmp_path):
  _write_voc(tmp_path)
  main = tmp_path / "ImageSets" / "Main"
  with pytest.raises(DataFileError, match=re.escape(str(main / "test.txt")) + " does not "
                     "exist .*\\['train', 'val'\\]"):
    data_lib.load("voc_xml", "test", root=str(tmp_path))
  xml = tmp_path / "Annotations" / "img_c.xml"
  xml.write_text("<annotation><object><name>cat</name></annotation>")
  with pytest.raises(DataFileError, match=re.escape(str(xml)) + " is not well-formed XML: "
                     "mismatched tag: line 1"):
    data_lib.load("voc_xml", "val", root=str(tmp_path), class_names=("cat",))
  with pytest.raises(DataFileError, match=re.escape(str(xml))):  # also when inferring classes
    data_lib.load("voc_xml", "train", root=str(tmp_path))
  xml.write_text(_xml("img_c.png", [("cat", 0, (1, "x", 3, 4))]))
  with pytest.raises(DataFileError, match=re.escape(str(xml)) + ": object 0 \\(cat\\): "
                     "<bndbox> needs numbers"):
    data_lib.load("voc_xml", "val", root=str(tmp_path))
  xml.unlink()
  with pytest.raises(DataFileError, match=re.escape(str(xml)) + " does not exist"):
    data_lib.load("voc_xml", "val", root=str(tmp_path))
  image = tmp_path / "JPEGImages" / "img_a.png"
  image.unlink()
  with pytest.raises(DataFileError, match=re.escape(str(image)) + " or .*img_a.jpg does not "
                     "exist \\(image 'img_a' of .*train.txt"):
    data_lib.load("voc_xml", "train", root=str(tmp_path), class_names=catalog.VOC_CLASS_NAMES)
  with pytest.raises(DataFileError, match="voc_xml root .*nowhere is not a directory"):
    data_lib.load("voc_xml", "train", root=str(tmp_path / "nowhere"))
