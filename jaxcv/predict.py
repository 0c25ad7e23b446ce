"""Detections for a folder of images from a trained run, as a COCO results file.

    python -m jaxcv.predict --workdir W --images DIR --out preds.json [--draw OUT_DIR]
        [--config C] [--annotations GT.json] [--score-thresh 0.5] [--batch-size N]

The run's config is `W/config.json` (the merged config `train.py` wrote; `--config` a
`configs/*.py` file instead), its weights the best checkpoint (`W/best`) or else the newest
(`W/checkpoints`). Every image (png, jpg, jpeg, bmp) of `--images` goes through the config's
`data.preprocess` (for detectors `resize_to_canvas`: torchvision's resize rule, then the
fixed canvas) and the compiled model; boxes are mapped back to the original image's pixels.
The output is a COCO results list `[{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}]`, plus for Mask R-CNN runs `segmentation` (an RLE of the mask pasted at the
original image's size, threshold 0.5, as torchvision) and for Keypoint R-CNN runs `keypoints`
(`[x, y, 1] * K` in COCO's pixel convention); image and category ids are the original ones when the images have
a COCO annotation file (`--annotations`, or the run's `coco_json` evaluation split), else
the image's index in the sorted file list and the class (1..C). `--draw` writes each image
with its detections at or above `--score-thresh` (class names and scores) as a PNG.
`python -m jaxcv.metrics.coco GT.json preds.json [--iou-type segm|keypoints]` then scores
the file (as pycocotools' loadRes, a result with a `bbox` takes the box's area; drop `bbox`
from the results to score masks with their own areas, as detectron2's evaluator does).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _load_config(workdir: Path, config_file: str | None):
  import ml_collections  # noqa: PLC0415

  if config_file:
    spec = importlib.util.spec_from_file_location("predict_config", config_file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(config_file).resolve().parents[1]))
    spec.loader.exec_module(module)
    return module.get_config()
  path = workdir / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: give the run's workdir (train.py writes its "
                            "config.json there) or --config")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def _restore(trainer, workdir: Path):
  import jax  # noqa: PLC0415

  from jaxcv.train import checkpoint as ckpt_lib  # noqa: PLC0415

  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          trainer.abstract_state, trainer.state_sharding)
  best = workdir / "best"
  use_best = best.is_dir() and any(p.name.isdigit() for p in best.iterdir())
  metric = trainer.config.best_metric or "map"
  ckpts = ckpt_lib.Checkpoints(workdir, keep=int(trainer.config.keep_checkpoints),
                               best_metric=metric if use_best else None)
  if use_best:
    ckpts.last = ckpts.best  # restore() reads `last`: read the best one instead
  restored = ckpts.restore(abstract)
  if restored is None:
    raise FileNotFoundError(f"no readable checkpoint in {workdir} (best/ or checkpoints/)")
  return restored[0]


def read_image(path: Path) -> np.ndarray:
  from PIL import Image  # noqa: PLC0415

  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"), np.float32) / 255.0
  except Exception as e:  # noqa: BLE001 - PIL's errors vary by format
    raise ValueError(f"{path}: cannot read the image ({e})") from None


def _coco_ids(trainer, annotations: str | None):
  """(file name -> COCO image id, class -> COCO category id), or Nones."""
  ds = trainer.train_data
  category_ids = getattr(ds, "category_ids", None)
  ann = annotations
  if ann is None and trainer.config.data.name == "coco_json":
    a = trainer.config.data.get("annotations")
    if isinstance(a, str):
      ann = a
    elif a:
      splits = list(trainer.config.data.get("eval_splits", ())) or list(a)
      ann = a.get(splits[0]) if hasattr(a, "get") else None
  file_ids = None
  if ann:
    gt = json.loads(Path(ann).read_text())
    file_ids = {Path(im["file_name"]).name: int(im["id"]) for im in gt.get("images", [])}
  return file_ids, (None if category_ids is None else np.asarray(category_ids))


def _extra_fields(out, i, valid, boxes, batch, orig_hw) -> dict[str, list]:
  """Per valid detection of image `i`: `segmentation` (an RLE of the mask pasted at the
  original size, as torchvision's transform pastes after mapping the boxes back) for Mask
  R-CNN; `keypoints` `[x, y, 1, ...]` in the original pixels, in COCO's convention (pixel
  centres at integers: jaxcv's continuous coordinates minus 0.5, as detectron2 writes them)
  for Keypoint R-CNN."""
  import jax  # noqa: PLC0415

  from jaxcv.metrics import coco_rle  # noqa: PLC0415
  from jaxcv.models.detection.meta_arch.mask_rcnn import paste_masks  # noqa: PLC0415

  fields = {}
  if "mask_probs" in out:
    dets = {"mask_probs": out["mask_probs"][i][valid][None], "boxes": boxes[valid][None],
            "valid": np.ones((1, int(valid.sum())), bool)}
    masks = np.asarray(jax.jit(paste_masks, static_argnums=1)(dets, tuple(orig_hw)))[0]
    fields["segmentation"] = [coco_rle.to_json(coco_rle.encode(m)) for m in masks]
  if "keypoints" in out:
    ratio = np.asarray(batch["orig_hw"][i], np.float64) / np.maximum(batch["image_hw"][i], 1)
    kp = np.asarray(out["keypoints"][i][valid], np.float64).copy()
    kp[..., 0] = kp[..., 0] * ratio[1] - 0.5
    kp[..., 1] = kp[..., 1] * ratio[0] - 0.5
    kp[..., 2] = 1.0
    fields["keypoints"] = [k.ravel().round(3).tolist() for k in kp]
  return fields


def predict_folder(workdir, images, out, draw=None, config=None, annotations=None,
                   score_thresh=0.5, batch_size=None) -> list[dict]:
  """The command as a function; returns the results list it writes to `out`."""
  import jax  # noqa: PLC0415

  from jaxcv import viz  # noqa: PLC0415
  from jaxcv.data import augment  # noqa: PLC0415
  from jaxcv.train.loop import Trainer  # noqa: PLC0415
  from jaxcv.train.tasks.detection import to_original_pixels  # noqa: PLC0415

  workdir, images = Path(workdir), Path(images)
  files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
      if images.is_dir() else []
  if not files:
    raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images}")
  cfg = _load_config(workdir, config)
  trainer = Trainer(cfg, mesh=jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",)))
  if not hasattr(trainer.task, "draw_score_thresh"):
    raise ValueError(f"jaxcv.predict writes detections; task {cfg.task!r} is not a "
                     "detection task")
  state = _restore(trainer, workdir)
  preprocess = augment.build(list(cfg.data.get("preprocess", ()) or ()))
  file_ids, category_ids = _coco_ids(trainer, annotations)
  bs = int(batch_size or trainer.eval_batch_size)
  names = trainer.task.class_names
  task, model = trainer.task, trainer.model
  # the model's own outputs (Mask R-CNN: 28x28 mask probabilities, pasted per image below at
  # its original size), not the task's evaluation form
  detect = jax.jit(lambda st, b: model.apply(st.variables, task.model_input(b), b["image_hw"])[0])
  results, draw_dir = [], Path(draw) if draw else None
  if draw_dir:
    draw_dir.mkdir(parents=True, exist_ok=True)
  for start in range(0, len(files), bs):
    chunk = files[start:start + bs]
    originals = [read_image(p) for p in chunk]
    examples = []
    for img in originals:
      ex = preprocess({"image": img}) if cfg.data.get("preprocess") else {"image": img}
      h, w = img.shape[:2]
      ex.setdefault("image_hw", np.array(ex["image"].shape[:2], np.int32))
      ex.setdefault("orig_hw", np.array([h, w], np.int32))
      examples.append(ex)
    shapes = {e["image"].shape for e in examples}
    if len(shapes) != 1:
      raise ValueError(f"images of different sizes {sorted(shapes)} after data.preprocess: "
                       "a detector config needs a fixed canvas (resize_to_canvas)")
    n = len(examples)
    pad = [examples[-1]] * (bs - n)
    batch = {k: np.stack([e[k] for e in examples + pad]) for k in ("image", "image_hw",
                                                                   "orig_hw")}
    out_b = jax.device_get(detect(state, batch))
    boxes, _ = to_original_pixels(out_b["boxes"], batch["image_hw"], batch["orig_hw"])
    for i, path in enumerate(chunk):
      v = np.asarray(out_b["valid"][i], bool)
      image_id = file_ids.get(path.name) if file_ids is not None else start + i
      if image_id is None:
        raise ValueError(f"{path.name} is not an image of the annotation file")
      extra = _extra_fields(out_b, i, v, boxes[i], batch, originals[i].shape[:2])
      for j, (b, s, c) in enumerate(zip(boxes[i][v], out_b["scores"][i][v],
                                        out_b["classes"][i][v])):
        cat = int(category_ids[c - 1]) if category_ids is not None else int(c)
        x1, y1, x2, y2 = (float(t) for t in b)
        results.append({"image_id": int(image_id), "category_id": cat,
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s),
                        **{k: f[j] for k, f in extra.items()}})
      if draw_dir:
        keep = v & (out_b["scores"][i] >= score_thresh)
        pic = viz.draw_boxes(originals[i], boxes[i], out_b["classes"][i], out_b["scores"][i],
                             valid=keep, class_names=names,
                             scale=max(1, 256 // max(originals[i].shape[:2])))
        viz.save_png(draw_dir / f"{path.stem}.png", pic)
  Path(out).write_text(json.dumps(results))
  return results


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxcv.predict", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="the training run's workdir")
  parser.add_argument("--images", required=True, help="folder of images")
  parser.add_argument("--out", required=True, help="COCO results json to write")
  parser.add_argument("--draw", help="folder for PNGs of the detections")
  parser.add_argument("--config", help="config file (default: WORKDIR/config.json)")
  parser.add_argument("--annotations", help="COCO json of the images (original ids)")
  parser.add_argument("--score-thresh", type=float, default=0.5, help="for --draw")
  parser.add_argument("--batch-size", type=int, help="default: the config's eval batch")
  a = parser.parse_args(argv)
  try:
    results = predict_folder(a.workdir, a.images, a.out, a.draw, a.config, a.annotations,
                             a.score_thresh, a.batch_size)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {len(results)} detections to {a.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
