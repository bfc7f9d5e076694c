"""Reading and writing images safely: one place for every file that enters or leaves the project.

Used by the app (uploads), the audit (data folders) and the dataset loaders, so the same bad input gets
the same clear error everywhere.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deblur.degrade import as_image, to_uint8

__all__ = ["MAX_PIXELS", "ImageError", "decode_image", "encode_png", "load_image", "save_png"]

# 40 megapixels: a large phone photo passes, a decompression bomb (e.g. 10000x10000) does not.
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """A file that is not a usable image (unreadable, empty, too large)."""


def _check_size(width: int, height: int, what: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{what} is empty ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{what} is {width}x{height} = {width * height / 1e6:.0f} megapixels; the limit is "
            f"{max_pixels / 1e6:.0f} MP. Resize it first."
        )


def _open(fp, what: str, max_pixels: int) -> np.ndarray:
    try:
        with Image.open(fp) as im:
            _check_size(im.width, im.height, what, max_pixels)  # before decoding: no decompression bomb
            im = ImageOps.exif_transpose(im)  # phone photos store rotation in EXIF
            if im.mode not in ("RGB", "RGBA", "L", "LA", "I;16"):
                im = im.convert("RGBA" if "transparency" in im.info or im.mode in ("P", "PA") else "RGB")
            if im.mode == "LA":
                im = im.convert("RGBA")
            arr = np.asarray(im)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{what} is not an image PIL can read (PNG, JPEG, WebP, BMP, TIFF…)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{what} is too large to open safely: {exc}") from exc
    except OSError as exc:
        raise ImageError(f"{what} could not be decoded: {exc}") from exc
    if arr.dtype == np.int32:  # 16-bit grayscale PNG ("I;16" becomes int32 in some PIL versions)
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
    return as_image(arr, name=what)


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as ``HxWx3`` float32 in ``[0, 1]`` (EXIF rotation applied; gray/alpha converted).

    Raises:
        FileNotFoundError: if the file does not exist.
        ImageError: if it is not a readable image, is empty, or has more than ``max_pixels`` pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    return _open(path, f"'{path.name}'", max_pixels)


def decode_image(data: bytes, what: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes (e.g. a parquet cell or an upload) like :func:`load_image`."""
    if not data:
        raise ImageError(f"{what} is empty (0 bytes)")
    return _open(io.BytesIO(data), what, max_pixels)


def encode_png(img: np.ndarray) -> bytes:
    """Encode an image as 8-bit PNG bytes with no metadata (no EXIF, no text chunks)."""
    u8 = to_uint8(img)
    buf = io.BytesIO()
    Image.fromarray(u8, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def save_png(img: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``img`` as a metadata-free 8-bit PNG and return the path."""
    path = Path(path)
    path.write_bytes(encode_png(img))
    return path
