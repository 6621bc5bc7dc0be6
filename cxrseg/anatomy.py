"""Anatomy-aware clean-up of a predicted lung mask: fill holes inside each lung, keep the largest
components (two lungs).

A lung is one piece without holes; a prediction that stops where an opacity begins often leaves a
hole inside the lung (a mass, a consolidated patch the mask went around) or stray specks outside
it. Holes are filled per 8-connected component, so the mediastinum between two separate lungs is
never filled; a ring made of two lungs joined at the top and bottom is one component and is
filled like any other hole.
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from cxrstats.foundation.argtypes import int_range

EIGHT = np.ones((3, 3), bool)


def keep_largest(mask: np.ndarray, count: int) -> np.ndarray:
    """(H, W) uint8 0/1: the `count` largest 8-connected components of `mask` (0 keeps all)."""
    fg = np.asarray(mask) > 0
    if count <= 0:
        return fg.astype(np.uint8)
    labels, n = ndimage.label(fg, structure=EIGHT)
    if n <= count:
        return fg.astype(np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.argsort(-sizes, kind="stable")[:count] + 1
    return np.isin(labels, keep).astype(np.uint8)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 0/1: each 8-connected component with its holes filled."""
    fg = np.asarray(mask) > 0
    labels, n = ndimage.label(fg, structure=EIGHT)
    out = fg.copy()
    for index, piece in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[piece] == index
        out[piece] |= ndimage.binary_fill_holes(part)
    return out.astype(np.uint8)


def clean_mask(mask: np.ndarray, fill: bool = False, largest: int = 0) -> np.ndarray:
    """Keep the `largest` biggest components (0: all), then fill holes when `fill`."""
    out = keep_largest(mask, largest)
    return fill_holes(out) if fill else out


def add_anatomy_arguments(parser, unset: bool = False) -> None:
    """`--fill-holes` and `--keep-largest N`, shared by cxrseg.predict, postprocess and evaluate.

    `unset`: both default to None and `--no-fill-holes` exists, so that a caller can tell a flag
    given from one left out (cxrseg.predict takes what is left out from the segmenter's recipe)."""
    if unset:
        parser.add_argument("--fill-holes", action=argparse.BooleanOptionalAction, default=None,
                            help="fill holes inside each predicted lung (cxrseg.anatomy); "
                                 "default: the segmenter's recipe")
    else:
        parser.add_argument("--fill-holes", action="store_true",
                            help="fill holes inside each predicted lung (cxrseg.anatomy)")
    parser.add_argument("--keep-largest", type=int_range(0, 16), default=None if unset else 0,
                        help="keep only the N largest mask components, e.g. 2 lungs (0: keep all)"
                             + ("; default: the segmenter's recipe" if unset else ""))
