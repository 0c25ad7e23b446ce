"""jaxcv.viz on small synthetic images: what changes is exactly what was drawn.

Boxes change the pixels of their outline (to the class colour) and leave the inside and the
outside alone; masks and label overlays change only the pixels they cover; keypoints mark
their pixel and the skeleton the pixels between; grids and PNGs have the sizes they promise;
nothing here (nor anywhere in jaxcv) touches pyplot or the global matplotlib backend.
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxcv import viz

REPO = pathlib.Path(__file__).resolve().parents[1]
GRAY = np.full((32, 32, 3), 0.5, np.float32)


def changed(a, b):
  """bool `[H, W]`: pixels where `a` and `b` differ in any channel."""
  return np.any(np.asarray(a) != np.asarray(b), -1)


# ------------------------------------------------------------------------------------------
# colours


def test_class_colors_never_give_a_class_the_background_black():
  np.testing.assert_array_equal(viz.class_colors(0), [0, 0, 0])
  np.testing.assert_array_equal(viz.class_colors([1, 15]), viz.PALETTE[[1, 15]])
  np.testing.assert_array_equal(viz.class_colors(16), viz.PALETTE[1])
  assert viz.class_colors(np.zeros((2, 3), int)).shape == (2, 3, 3)


def test_as_rgb_repeats_gray_and_clips():
  g = np.array([[0.2, 1.5], [-1.0, np.nan]], np.float32)
  out = viz.as_rgb(g)
  assert out.shape == (2, 2, 3) and out.dtype == np.float32
  np.testing.assert_array_equal(out[..., 0], np.float32([[0.2, 1.0], [0.0, 0.0]]))
  np.testing.assert_array_equal(viz.as_rgb(g[..., None]), out)
  with pytest.raises(ValueError, match="expected an image"):
    viz.as_rgb(np.zeros((2, 2, 4)))


def test_colormap_ends_range_and_non_finite():
  import matplotlib
  cmap = matplotlib.colormaps["viridis"]
  out = viz.colormap(np.array([1.0, 3.0, 5.0, np.inf, 9.0]), lo=1.0, hi=5.0)
  np.testing.assert_allclose(out[0], cmap(0.0)[:3], rtol=1e-6)
  np.testing.assert_allclose(out[1], cmap(0.5)[:3], rtol=1e-6)
  np.testing.assert_allclose(out[2], cmap(1.0)[:3], rtol=1e-6)
  np.testing.assert_array_equal(out[3], 0.0)  # not finite: black
  np.testing.assert_array_equal(out[4], out[2])  # above hi: clipped
  # default range: the finite min and max
  np.testing.assert_array_equal(viz.colormap(np.array([2.0, 4.0, np.nan]))[:2], out[[0, 2]])
  assert viz.value_range(np.array([np.nan, 3.0]), np.array([-1.0, np.inf])) == (-1.0, 3.0)
  assert viz.value_range(np.array([np.nan])) == (0.0, 1.0)


def test_normals_to_rgb():
  n = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
  np.testing.assert_allclose(viz.normals_to_rgb(n), [[0.5, 0.5, 0.0], [1.0, 0.5, 0.5],
                                                     [0.5, 0.5, 0.5]])


# ------------------------------------------------------------------------------------------
# grids and PNGs


def test_tile_places_images_row_major_with_white_padding():
  imgs = np.stack([np.full((4, 5, 1), v, np.float32) for v in (0.1, 0.2, 0.3)])
  out = viz.tile(imgs, 2, 2, pad=1)
  assert out.shape == (2 * 5 + 1, 2 * 6 + 1, 3)
  np.testing.assert_array_equal(out[1:5, 1:6], np.float32(0.1))
  np.testing.assert_array_equal(out[1:5, 7:12], np.float32(0.2))
  np.testing.assert_array_equal(out[6:10, 1:6], np.float32(0.3))
  np.testing.assert_array_equal(out[6:10, 7:12], 1.0)  # the empty cell
  np.testing.assert_array_equal(out[0], 1.0)
  np.testing.assert_array_equal(out[:, 6], 1.0)
  with pytest.raises(ValueError, match="do not fit"):
    viz.tile(imgs, 1, 2)


def test_save_png_round_trip_and_scale(tmp_path):
  img = np.zeros((3, 4, 3), np.float32)
  img[1, 2] = [1.0, 0.5, 0.0]
  path = viz.save_png(tmp_path / "a.png", img, scale=3)
  back = np.asarray(Image.open(path))
  assert back.shape == (9, 12, 3) and back.dtype == np.uint8
  np.testing.assert_array_equal(back[3:6, 6:9], np.broadcast_to([255, 128, 0], (3, 3, 3)))
  assert back[:3].max() == 0
  viz.save_png(tmp_path / "g.png", np.full((2, 2), 255, np.uint8))  # uint8 gray as is
  assert np.asarray(Image.open(tmp_path / "g.png")).min() == 255


def test_render_grid_size_titles_and_ragged_rows(tmp_path):
  a = viz.render_grid([[GRAY, GRAY[..., 0]], [GRAY]], ["one", "two"], cell_inches=1.0, dpi=50)
  assert a.dtype == np.uint8 and a.shape == (100, 100, 3)
  b = viz.render_grid([[GRAY] * 3], cell_titles=[["x", "y", "z"]],
                      cell_colors=[["red", "black", "red"]], suptitle="s", cell_inches=1.0,
                      dpi=50)
  assert b.shape[1] == 150 and b.shape[0] > 50
  assert ((b[..., 0] > 200) & (b[..., 1] < 60)).any()  # some red title text
  path = viz.save_grid([[GRAY]], ["t"], tmp_path / "g.png")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="at least one image"):
    viz.render_grid([])


# ------------------------------------------------------------------------------------------
# label overlays and instance masks


def test_overlay_paints_only_classes_above_zero_and_not_ignored():
  img = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
  labels = np.zeros((8, 8), np.int32)
  labels[1:3, 1:4] = 2
  labels[5, :] = 255
  labels[6, 6] = 17  # beyond the palette: wraps to a class colour, never black
  out = viz.overlay(img, labels, alpha=0.5)
  np.testing.assert_array_equal(changed(out, img), (labels > 0) & (labels != 255))
  np.testing.assert_allclose(out[1, 1], 0.5 * img[1, 1] + 0.5 * viz.PALETTE[2], rtol=1e-6)
  np.testing.assert_allclose(out[6, 6], 0.5 * img[6, 6] + 0.5 * viz.PALETTE[2], rtol=1e-6)
  with pytest.raises(ValueError, match="differ in size"):
    viz.overlay(img, labels[:4])


def test_masks_change_only_masked_pixels_and_edges_take_the_class_colour():
  masks = np.zeros((3, 32, 32), bool)
  masks[0, 4:12, 4:12] = True
  masks[1, 20:30, 16:28] = True
  masks[2, 0:32, 0:2] = True  # a padding row: not drawn
  out = viz.draw_masks(GRAY, masks, classes=[1, 3, 2], valid=[True, True, False], alpha=0.5)
  np.testing.assert_array_equal(changed(out, GRAY), masks[0] | masks[1])
  np.testing.assert_array_equal(out[4, 4], viz.PALETTE[1])  # an edge pixel: full colour
  np.testing.assert_allclose(out[8, 8], 0.5 * 0.5 + 0.5 * viz.PALETTE[1], rtol=1e-6)
  np.testing.assert_array_equal(out[25, 16], viz.PALETTE[3])
  flat = viz.draw_masks(GRAY, masks[:1], edges=False, alpha=0.5)
  np.testing.assert_allclose(flat[4, 4], flat[8, 8])
  with pytest.raises(ValueError, match=r"\[M, H, W\]"):
    viz.draw_masks(GRAY, masks[0])


def test_mask_edges():
  m = np.zeros((6, 6), bool)
  m[1:5, 1:5] = True
  e = viz.mask_edges(m)
  assert e.sum() == 12 and not e[2:4, 2:4].any() and e[1, 1] and not e[0, 0]


# ------------------------------------------------------------------------------------------
# boxes and keypoints


def test_box_outline_changes_to_the_class_colour_inside_and_outside_unchanged():
  out = viz.draw_boxes(GRAY, [[4.0, 8.0, 20.0, 24.0]], classes=[3], labels=False)
  ring = np.zeros((32, 32), bool)
  ring[8:24, 4:20] = True
  ring[9:23, 5:19] = False  # the outline: the outermost pixels inside the box
  np.testing.assert_array_equal(changed(out, GRAY), ring)
  np.testing.assert_array_equal(out[8, 10], viz.PALETTE[3])
  np.testing.assert_array_equal(out[15, 19], viz.PALETTE[3])  # x2 = 20: last pixel 19
  np.testing.assert_array_equal(out[15, 12], GRAY[15, 12])


def test_box_label_with_class_name_and_score_is_drawn_above_the_box():
  box = [[4.0, 16.0, 28.0, 30.0]]
  plain = viz.draw_boxes(GRAY, box, classes=[1], labels=False, scale=2)
  named = viz.draw_boxes(GRAY, box, classes=[1], scores=[0.87], class_names=["bg", "circle"],
                         scale=2)
  assert named.shape == (64, 64, 3)
  extra = changed(named, plain)
  assert extra[:32].any()  # the label sits above the box's top edge (y = 32 at scale 2)
  assert not extra[33:].any()
  assert not changed(named, viz.draw_boxes(GRAY, box, classes=[1], scale=2,
                                           class_names={1: "circle"}, scores=[0.87])).any()


def test_invalid_non_finite_and_outside_boxes_draw_nothing():
  boxes = [[2, 2, 10, 10], [np.nan, 0, 4, 4], [40, 40, 50, 50]]
  out = viz.draw_boxes(GRAY, boxes, valid=[False, True, True])
  np.testing.assert_array_equal(out, GRAY)
  # a box crossing the border is clipped to the image, not dropped
  assert changed(viz.draw_boxes(GRAY, [[-5, -5, 8, 8]], labels=False), GRAY)[7, 0:8].all()


def test_keypoints_visible_occluded_unlabelled_and_skeleton():
  kp = np.array([[[5.5, 5.5, 2], [25.5, 5.5, 1], [15.5, 25.5, 0]]], np.float32)
  out = viz.draw_keypoints(GRAY, kp, skeleton=[(0, 1), (0, 2)], radius=1, classes=[2])
  diff = changed(out, GRAY)
  np.testing.assert_array_equal(out[5, 5], viz.PALETTE[2])  # visible: filled dot
  assert diff[5, 15]  # on the line between keypoints 0 and 1
  assert not diff[25, 15] and not diff[15, 10]  # unlabelled: no dot, no line to it
  assert diff[4:7, 24:27].any()  # occluded: a ring
  assert not diff[20:].any()
  one = viz.draw_keypoints(GRAY, kp[0], valid=[False])
  np.testing.assert_array_equal(one, GRAY)
  assert viz.draw_keypoints(GRAY, kp, scale=3).shape == (96, 96, 3)
  assert len(viz.COCO_SKELETON) == 19 and max(max(p) for p in viz.COCO_SKELETON) == 16


# ------------------------------------------------------------------------------------------
# import structure: no global matplotlib state, viz imports no jax or task code, and (as
# drawing moved here out of the tasks) no task module imports another


def test_drawing_imports_no_pyplot_and_keeps_the_backend():
  code = ("import sys, matplotlib, numpy as np\n"
          "raw = lambda: dict.__getitem__(matplotlib.rcParams, 'backend')\n"
          "before = raw()  # get_backend() would resolve it, importing pyplot\n"
          "from jaxcv import viz\n"
          "viz.render_grid([[np.zeros((4, 4, 3))]], ['t'])\n"
          "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
          "assert raw() == before, (before, raw())\n"
          "assert 'jax' not in sys.modules, 'jax imported'\n")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def imported_modules(tree) -> list[str]:
  """Every module an `import` or `from ... import` of `tree` names."""
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      out += [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
  return out


def test_no_module_sets_the_backend_or_uses_pyplot_and_viz_imports_only_drawing_libs():
  allowed = {"__future__", "collections", "pathlib", "typing", "numpy", "matplotlib", "PIL"}
  for path in (REPO / "jaxcv").rglob("*.py"):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and node.attr == "use"
          and getattr(node.value, "id", None) == "matplotlib"):
        pytest.fail(f"{path}: matplotlib.use")
    mods = imported_modules(tree)
    assert not [m for m in mods if "pyplot" in m], f"{path} imports pyplot"
    if path.parent.name == "viz":
      bad = [m for m in mods if m.split(".")[0] not in allowed and not m.startswith("jaxcv.viz")]
      assert not bad, f"{path} imports {bad}"


def test_no_task_module_imports_another_or_defines_its_own_jitted_predict():
  # shared task code, not tasks; `detection` and `instance` are also the bases of the
  # detection family's subclasses (instance, keypoints, panoptic), which extend them
  shared = {"base", "checks", "dense_base", "__init__", "detection", "instance"}
  folder = REPO / "jaxcv" / "train" / "tasks"
  task_modules = {p.stem for p in folder.glob("*.py")} - shared
  for path in folder.glob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      assert not (isinstance(node, ast.FunctionDef) and node.name == "_predict"), path.name
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxcv.train.tasks"):
        names = {node.module.rsplit(".", 1)[-1]} | {a.name for a in node.names}
        assert not names & (task_modules - {path.stem}), f"{path.name}: {ast.unparse(node)}"
