"""A confusion-matrix heatmap as a PNG, drawn without an imaging library (zlib + struct + numpy).

Cells are shaded by the row-normalised value (the recall of each true class), print their count,
and rows/columns are labelled with a built-in 3x5 pixel font (digits, A-Z and a few symbols; other
characters print as '?', letters in upper case).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmkit.atomic import write_bytes

_FONT: dict[str, str] = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", "A": "010101111101101", "B": "110101110101110",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111",
    "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101",
    "L": "100100100100111", "M": "101111111101101", "N": "110101101101101",
    "O": "010101101101010", "P": "110101110100100", "Q": "010101101110011",
    "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101",
    "X": "101101010101101", "Y": "101101010010010", "Z": "111001010100111",
    "-": "000000111000000", "_": "000000000000111", ".": "000000000000010",
    "/": "001001010100100", ":": "000010000010000", "%": "101001010100101",
    "+": "000010111010000", "=": "000111000111000", " ": "000000000000000",
    "?": "111001010000010", "\\": "100100010001001",
}  # fmt: skip

_SCALE = 2  # screen pixels per font pixel
_GLYPH_W, _GLYPH_H = 3 * _SCALE, 5 * _SCALE
_ADVANCE = _GLYPH_W + _SCALE
_LOW = np.array([255, 255, 255], dtype=np.float64)
_HIGH = np.array([33, 102, 172], dtype=np.float64)


def _glyph(ch: str) -> np.ndarray:
    bits = _FONT.get(ch.upper(), _FONT["?"])
    grid = np.array([int(b) for b in bits], dtype=bool).reshape(5, 3)
    return np.kron(grid, np.ones((_SCALE, _SCALE), dtype=bool))


def text_width(text: str) -> int:
    """Width in pixels of `text` in the built-in font."""
    return max(0, len(text) * _ADVANCE - _SCALE)


def draw_text(img: np.ndarray, x: int, y: int, text: str, color: Sequence[int]) -> None:
    """Draw `text` with its top-left corner at (x, y), clipped to the image."""
    for i, ch in enumerate(text):
        gx = x + i * _ADVANCE
        mask = _glyph(ch)
        h, w = mask.shape
        y0, x0 = max(y, 0), max(gx, 0)
        y1, x1 = min(y + h, img.shape[0]), min(gx + w, img.shape[1])
        if y1 <= y0 or x1 <= x0:
            continue
        sub = mask[y0 - y : y1 - y, x0 - gx : x1 - gx]
        img[y0:y1, x0:x1][sub] = color


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image (8-bit RGB, no interlace, filter 0)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {rgb.shape}")
    height, width = rgb.shape[:2]
    raw = np.zeros((height, 1 + width * 3), dtype=np.uint8)
    raw[:, 1:] = rgb.astype(np.uint8).reshape(height, width * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def confusion_image(
    labels: Sequence[Any], matrix: Sequence[Sequence[float]], max_label: int = 12
) -> np.ndarray:
    """The heatmap as an (H, W, 3) uint8 array: rows true labels, columns predicted labels."""
    m = np.asarray(matrix, dtype=np.float64).reshape(len(labels), len(labels))
    k = len(labels)
    names = [str(label)[:max_label] for label in labels]
    counts = [[f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}" for v in row] for row in m]
    longest_count = max((text_width(c) for row in counts for c in row), default=0)
    cell = max(28, longest_count + 8, max((text_width(n[:4]) for n in names), default=0) + 6)
    pad = 8
    left = pad + max((text_width(n) for n in names), default=0) + pad
    top = pad + _GLYPH_H + pad + _GLYPH_H + pad  # "PRED" caption, then column labels
    width = left + k * cell + pad
    height = top + k * cell + pad + _GLYPH_H + pad  # "TRUE" caption below
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    rows = m.sum(axis=1, keepdims=True)
    shade = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    black, white = (0, 0, 0), (255, 255, 255)
    draw_text(img, left, pad, "PRED", black)
    draw_text(img, pad, top + k * cell + pad, "TRUE", black)
    for j, name in enumerate(names):
        short = name[: max(1, (cell - 4) // _ADVANCE)]
        x = left + j * cell + (cell - text_width(short)) // 2
        draw_text(img, x, top - pad - _GLYPH_H, short, black)
    for i, name in enumerate(names):
        y0 = top + i * cell
        draw_text(img, left - pad - text_width(name), y0 + (cell - _GLYPH_H) // 2, name, black)
        for j in range(k):
            x0 = left + j * cell
            color = _LOW + (_HIGH - _LOW) * shade[i, j]
            img[y0 : y0 + cell, x0 : x0 + cell] = color.round().astype(np.uint8)
            img[y0 : y0 + cell, x0] = 200
            img[y0, x0 : x0 + cell] = 200
            text = counts[i][j]
            ink = white if shade[i, j] > 0.5 else black
            draw_text(
                img,
                x0 + (cell - text_width(text)) // 2,
                y0 + (cell - _GLYPH_H) // 2,
                text,
                ink,
            )
    img[top : top + k * cell + 1, left + k * cell] = 200
    img[top + k * cell, left : left + k * cell + 1] = 200
    return img


def save_confusion_png(
    path: str | Path, labels: Sequence[Any], matrix: Sequence[Sequence[float]]
) -> Path:
    """Write the confusion-matrix heatmap of `labels`/`matrix` to `path` (atomically)."""
    return write_bytes(path, encode_png(confusion_image(labels, matrix)))
