"""The study's lung-mask geometry, the one place its numbers are written (defaults of every CLI,
benchmark and experiment that builds or scores M-15 / M-50).

The raw lung mask is eroded by a disk of ERODE_RADIUS pixels, then dilated by each of DILATE_RADII
pixels (M-15, M-50). Radii are in pixels of the classifier cache's images, whose side is
PIPELINE_SIZE (masks of another size are scaled to it before the radii apply, see cxrseg.coverage).
"""
ERODE_RADIUS = 5
DILATE_RADII = (15, 50)
PIPELINE_SIZE = 512
