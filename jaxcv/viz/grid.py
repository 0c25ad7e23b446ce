"""Grids of images and the PNG writer.

- `tile`: images side by side in one array (the latent tasks' reconstructions, samples and
  interpolations), no figure, pixel for pixel.
- `render_grid` / `save_grid`: a matplotlib figure of images with column titles (and
  optional per-image titles), rendered to an array / written as a PNG. The figure has its
  own Agg canvas (`matplotlib.figure.Figure`, never pyplot), so drawing changes neither the
  global backend nor a notebook's open figures.
- `save_png`: writes an RGB array with PIL.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from jaxcv.viz.color import as_rgb


def tile(images, rows: int, cols: int, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
  """`[N, H, W, C]` (C 1 or 3; N <= rows * cols, row-major) -> one float32 RGB image
  `[rows * (H + pad) + pad, cols * (W + pad) + pad, 3]` with `pad` pixels of `pad_value`
  (white) around and between the images; cells past N stay `pad_value`."""
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be [N, H, W, 1 or 3]; got shape {images.shape}")
  n, h, w, _ = images.shape
  if n > rows * cols:
    raise ValueError(f"{n} images do not fit a {rows}x{cols} grid")
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), pad_value, np.float32)
  for i in range(n):
    r, q = divmod(i, cols)
    y, x = pad + r * (h + pad), pad + q * (w + pad)
    out[y:y + h, x:x + w] = as_rgb(images[i])
  return out


def to_uint8(image) -> np.ndarray:
  """RGB float in [0, 1] (clipped; gray `[H, W]` / `[H, W, 1]` repeated) or uint8 ->
  uint8 `[H, W, 3]`."""
  x = np.asarray(image)
  if x.dtype == np.uint8:
    x = x[..., None] if x.ndim == 2 else x
    return np.repeat(x, 3, -1) if x.shape[-1] == 1 else x[..., :3]
  return np.round(as_rgb(x) * 255.0).astype(np.uint8)


def save_png(path: str | Path, image, scale: int = 1) -> Path:
  """Writes `image` (see `to_uint8`) to `path` as an RGB PNG, each pixel repeated
  `scale` x `scale` times (nearest, so small images stay sharp). Returns the path."""
  if scale < 1:
    raise ValueError(f"scale must be >= 1; got {scale}")
  x = to_uint8(image)
  if scale > 1:
    x = np.repeat(np.repeat(x, scale, 0), scale, 1)
  path = Path(path)
  Image.fromarray(x, "RGB").save(path, format="PNG")
  return path


def render_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str] | None = None,
                cell_titles: Sequence[Sequence[str]] | None = None,
                cell_colors: Sequence[Sequence[str]] | None = None,
                suptitle: str | None = None, cell_inches: float = 2.2, dpi: int = 80,
                fontsize: int = 9) -> np.ndarray:
  """A figure of `rows` (each a list of images: RGB `[H, W, 3]` in [0, 1], or 2-D shown with
  matplotlib's default colour map; rows may be shorter than the longest, the rest of the
  row stays blank) rendered to uint8 RGB `[height, width, 3]`.

  `titles[j]` heads column `j` (first row); `cell_titles[i][j]` (coloured
  `cell_colors[i][j]`, default black) titles one image instead; `suptitle` goes on top.
  Each cell is `cell_inches` square at `dpi` dots per inch."""
  n = len(rows)
  m = max([len(r) for r in rows] + [len(titles or ())])
  if n == 0 or m == 0:
    raise ValueError("render_grid needs at least one image")
  fig = Figure(figsize=(cell_inches * m, cell_inches * n + (0.3 if suptitle else 0.0)),
               dpi=dpi)
  canvas = FigureCanvasAgg(fig)  # the figure's own canvas: no pyplot, no global backend
  axes = fig.subplots(n, m, squeeze=False)
  for ax in axes.ravel():
    ax.set_axis_off()
  for i, row in enumerate(rows):
    for j, img in enumerate(row):
      ax = axes[i, j]
      ax.imshow(np.asarray(img), interpolation="nearest")
      if cell_titles is not None:
        color = cell_colors[i][j] if cell_colors is not None else "black"
        ax.set_title(cell_titles[i][j], fontsize=fontsize, color=color)
      elif titles is not None and i == 0 and j < len(titles):
        ax.set_title(titles[j], fontsize=fontsize)
  if suptitle:
    fig.suptitle(suptitle, fontsize=fontsize)
  fig.tight_layout()
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str] | None,
              path: str | Path, **kwargs) -> Path:
  """`render_grid(rows, titles, **kwargs)` written to `path` as a PNG; returns the path."""
  return save_png(path, render_grid(rows, titles, **kwargs))
