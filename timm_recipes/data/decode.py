"""One decode-and-transform step for every source: encoded bytes + the pipeline → the sample.

Every dataset (image folders, and any source that holds encoded images: tar shards, parquet) hands the encoded
bytes and its pipeline to :func:`decode_and_transform`. For a JPEG that the pipeline will crop to a window much
larger than its output, it decodes at 1/2 or 1/4 of the size with libjpeg's DCT scaling (OpenCV
``IMREAD_REDUCED_COLOR_2/4``), which skips most of the inverse DCT and colour conversion work, then crops the same
region of the scene from the reduced image.

When it is used, and why the output does not get worse:

* Only for a pipeline whose first geometric step is this package's :class:`~timm_recipes.data.transforms.
  MultiScaleCrop` or :class:`~timm_recipes.data.transforms.InceptionCrop` (always applied). The JPEG frame header
  gives the size (:func:`jpeg_size` reads nothing else); the crop's parameters are still drawn on the full size,
  from the pipeline's own generator, so the draws are identical with and without reduced decoding.
* The factor is chosen from the smallest window *any* draw can give (``min_window_side``), so that the window in
  the reduced image is still at least the output size: the final step is always a downscale by the package's
  antialiased filter, from a reduced image that libjpeg computed as a low-pass (the low-frequency DCT coefficients
  of every block, i.e. an average over the block, not a point sample). 1/8 (DC only, blocky) is never used.
* The window is scaled to the reduced image and rounded to its pixels (an offset of at most half a reduced pixel).
  Measured in the tests on the sample photos at > 1,000 px: mean absolute difference to the full-decode output of
  about 1 grey level, the same order as the difference between two antialiasing filters.

Everything else (PNG, small JPEGs, other pipelines, ``reduce=False``) is the full :func:`~timm_recipes.data.
datasets.decode_image` followed by the pipeline, exactly as before.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REDUCTION_FACTORS", "decode_and_transform", "jpeg_size", "reduction_factor"]

REDUCTION_FACTORS = (4, 2)  # libjpeg DCT scaling used here, largest first (1/8 is DC only: never)
# The reduced window must still be this many times the output side: the antialiased filter then does most of the
# reduction and the DCT scaling only the first step (measured in tests/test_decode.py).
MIN_REMAINING_DOWNSCALE = 2.0


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic): they carry the size.
_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
# Markers without a length field: TEM, RST0-7, SOI.
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD9)))


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` of a JPEG from its start-of-frame header, or None if it is not a readable JPEG.

    Walks the marker segments from the start (a few steps: APPn, DQT, SOF), about 2 µs, instead of asking PIL
    (about 40 µs: it builds an image object). None for anything it cannot read with certainty (not a JPEG, a
    segment that runs past the end, a scan before any frame header, a height left to a DNL marker): the full
    decoder then handles, and reports, the file. The decoders here ignore the EXIF orientation, so this is the
    decoded size.
    """
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or a scan, before any frame header
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if length < 7 or i + 9 > n:
                return None
            height, width = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            return (height, width) if height and width else None
        i += 2 + length
    return None


def _crop_of(transform: Any) -> Any:
    """The pipeline's crop (MultiScaleCrop / InceptionCrop) if it is the first geometric step, applied always."""
    from timm_recipes.data.transforms import EnsureRGB, InceptionCrop, MultiScaleCrop

    for t in getattr(transform, "transforms", ()):
        if isinstance(t, EnsureRGB):
            continue
        if isinstance(t, (MultiScaleCrop, InceptionCrop)) and t.p >= 1:
            return t
        return None
    return None


def reduction_factor(transform: Any, height: int, width: int) -> int:
    """The DCT scaling factor (1, 2 or 4) safe for ``transform`` on an ``height`` × ``width`` image: the largest
    factor whose reduced smallest possible window is still at least the crop's output side."""
    crop = _crop_of(transform)
    if crop is None:
        return 1
    out = crop.crop_size if hasattr(crop, "crop_size") else crop.size
    smallest = crop.min_window_side(height, width)
    for factor in REDUCTION_FACTORS:
        if smallest / factor >= MIN_REMAINING_DOWNSCALE * out:
            return factor
    return 1


def decode_and_transform(data: bytes, transform: Any, name: str | None = None, *, reduce: bool = True) -> Any:
    """Decode encoded image ``data`` and apply ``transform`` (``transform(image=…)["image"]``; None: the image).

    Args:
        data: the encoded file (JPEG, PNG, …), as bytes.
        transform: the sample's pipeline (already seeded for this sample by the loader).
        name: how to name the image in errors (a path, or ``shard:key``).
        reduce: allow reduced-size JPEG decoding where it is safe (see the module docstring).

    Returns:
        The pipeline's output (or the decoded uint8 H×W×3 RGB image when ``transform`` is None).

    Raises:
        CorruptImageError: the bytes do not decode (naming ``name``).
    """
    from timm_recipes.data.datasets import decode_image

    if transform is None:
        return decode_image(data, name=name)
    size = jpeg_size(data) if reduce else None
    factor = reduction_factor(transform, *size) if size is not None else 1
    if factor == 1:
        return transform(image=decode_image(data, name=name))["image"]
    image = decode_image(data, name=name, reduce=factor)
    return transform(image=image, source_shape=size)["image"]
