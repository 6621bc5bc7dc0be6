"""Synthetic chest X-ray phantoms for the demo: anatomy, lung masks and five findings.

A phantom is drawn in normalised coordinates (u, v) in [-1, 1] (u left to right, v top to bottom,
image left = patient's right, as on a PA radiograph), so any pixel size works. Brightness follows a
radiograph: air is dark, soft tissue grey, bone and opacities bright. The two lung fields, after the
heart, mediastinum and diaphragm are cut out of them, are the lung mask.

Everything is vectorised numpy driven by one `numpy.random.Generator`, so the same generator state
gives the same bytes. `sample_patient` draws a patient's anatomy; `render` draws one image of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cxrcls.labels import FINDINGS

# 5x7 bitmap glyphs for the side marker (1 = ink); drawn with numpy, no font files.
_GLYPHS = {
    "L": ["X....", "X....", "X....", "X....", "X....", "X....", "XXXXX"],
    "R": ["XXXX.", "X...X", "X...X", "XXXX.", "X.X..", "X..X.", "X...X"],
}


@dataclass(frozen=True)
class Anatomy:
    """One patient's body and lung geometry (normalised units) and imaging habits."""

    shift: tuple[float, float]          # whole-chest offset (du, dv)
    scale: float                        # whole-chest size factor
    body_half_width: float
    body_power: float                   # superellipse exponent of the torso outline
    lung_center_u: tuple[float, float]  # |u| of the right (image-left) and left lung centres
    lung_center_v: tuple[float, float]
    lung_half_width: tuple[float, float]
    lung_half_height: tuple[float, float]
    lung_harmonics: tuple[tuple[float, ...], ...]  # per lung: amplitudes and phases of 3 harmonics
    heart_center: tuple[float, float]
    heart_half_axes: tuple[float, float]
    dome_top: tuple[float, float]       # diaphragm dome apex v, right and left
    rib_start: float
    rib_step: float
    rib_tilt: float
    marker: str                         # "L" or "R"
    marker_corner: int                  # 0 top-left, 1 top-right


@dataclass
class Phantom:
    """One rendered phantom: the image, its lung mask and its body mask, all (S, S)."""

    image: np.ndarray   # (S, S) uint8
    lungs: np.ndarray   # (S, S) uint8, 0/1
    body: np.ndarray    # (S, S) uint8, 0/1
    findings: tuple[str, ...] = ()
    cue: bool = False
    extras: dict = field(default_factory=dict)


def sample_patient(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy: lung size and shape, heart, diaphragm, ribs, marker habit."""
    u = rng.uniform
    return Anatomy(
        shift=(u(-0.05, 0.05), u(-0.05, 0.05)),
        scale=u(0.95, 1.1),
        body_half_width=u(0.80, 0.93),
        body_power=u(2.4, 3.4),
        lung_center_u=(u(0.35, 0.42), u(0.36, 0.44)),
        lung_center_v=(u(-0.08, 0.02), u(-0.06, 0.04)),
        lung_half_width=(u(0.27, 0.33), u(0.25, 0.31)),
        lung_half_height=(u(0.56, 0.66), u(0.56, 0.68)),
        lung_harmonics=tuple(tuple(np.concatenate([rng.uniform(0.0, 0.05, 3),
                                                   rng.uniform(0, 2 * np.pi, 3)]).tolist())
                             for _ in range(2)),
        heart_center=(u(0.12, 0.2), u(0.24, 0.32)),
        heart_half_axes=(u(0.28, 0.36), u(0.19, 0.25)),
        dome_top=(u(0.34, 0.46), u(0.40, 0.52)),
        rib_start=u(-0.72, -0.62),
        rib_step=u(0.115, 0.14),
        rib_tilt=u(0.35, 0.55),
        marker=str(rng.choice(["L", "R"])),
        marker_corner=int(rng.integers(0, 2)),
    )


def sample_labels(rng: np.random.Generator, p_normal: float = 0.3,
                  rates: tuple[float, ...] = (0.28, 0.26, 0.3, 0.26, 0.26),
                  nodule_given_mass: float = 0.65) -> tuple[str, ...]:
    """Draw one image's findings (empty tuple = No Finding).

    Abnormal images carry each finding independently at `rates`, except that a Mass raises the
    chance of a Nodule to `nodule_given_mass`, so Mass and Nodule co-occur more often than chance.
    """
    if rng.random() < p_normal:
        return ()
    present = rng.random(len(FINDINGS)) < np.asarray(rates)
    if present[0]:
        present[1] = rng.random() < nodule_given_mass
    if not present.any():
        present[rng.integers(len(FINDINGS))] = True
    return tuple(label for label, p in zip(FINDINGS, present) if p)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u, v), each (S, S) float32 in (-1, 1)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    v, u = np.meshgrid(axis, axis, indexing="ij")
    return u, v


def _smooth_noise(rng: np.random.Generator, size: int, sigma_frac: float) -> np.ndarray:
    """Gaussian-filtered white noise, (S, S) float32, rescaled to zero mean and unit sd.

    Smooth fields are drawn on a coarser grid (about 2 samples per sigma) and upsampled
    bilinearly, which is much cheaper than filtering at full size and looks the same.
    """
    sigma = max(sigma_frac * size, 0.5)
    factor = max(1, int(sigma // 2))
    small = -(-size // factor)
    field_ = ndimage.gaussian_filter(rng.standard_normal((small, small)).astype(np.float32),
                                     sigma=sigma / factor, mode="wrap")
    if factor > 1:
        field_ = ndimage.zoom(field_, factor, order=1, mode="grid-wrap",
                              grid_mode=True)[:size, :size]
    return (field_ - field_.mean()) / (field_.std() + 1e-8)


def _soft_disk(u, v, cu, cv, radius, edge=0.15):
    """A disk of `radius` at (cu, cv) with a logistic edge `edge * radius` wide, values in
    [0, 1]."""
    d = np.hypot(u - cu, v - cv)
    return 1.0 / (1.0 + np.exp(np.clip((d - radius) / (edge * radius + 1e-6), -30, 30)))


def _lung_field(u, v, side: int, a: Anatomy) -> np.ndarray:
    """One lung field before the heart/diaphragm cut-outs, (S, S) bool. side 0 = image left."""
    sign = -1.0 if side == 0 else 1.0
    cu = sign * a.lung_center_u[side] * a.scale + a.shift[0]
    cv = a.lung_center_v[side] * a.scale + a.shift[1]
    du = (u - cu) / (a.lung_half_width[side] * a.scale)
    dv = (v - cv) / (a.lung_half_height[side] * a.scale)
    # Narrow apex, wide base; the medial border is straighter than the lateral one.
    width = 0.78 + 0.22 * np.clip(dv, -1, 1)
    lateral = sign * du
    du_shaped = np.where(lateral < 0, du * 1.15, du) / width
    theta = np.arctan2(dv, du_shaped)
    amps, phases = a.lung_harmonics[side][:3], a.lung_harmonics[side][3:]
    radius = 1.0 + sum(amp * np.cos((k + 2) * theta + ph)
                       for k, (amp, ph) in enumerate(zip(amps, phases)))
    return du_shaped ** 2 + dv ** 2 < radius ** 2


def _anatomy_layers(u, v, a: Anatomy) -> dict[str, np.ndarray]:
    """Boolean/float layers of the chest: body, lungs, heart, mediastinum, abdomen, ribs."""
    su, sv = a.shift
    uu = (u - su) / a.scale
    vv = (v - sv) / a.scale
    body = (np.abs(uu / a.body_half_width) ** a.body_power
            + np.abs((vv - 0.35) / 1.45) ** a.body_power) < 1.0
    neck = (np.abs(uu) < 0.22) & (vv < -0.6)
    body = body | neck

    hu, hv = a.heart_center
    ha, hb = a.heart_half_axes
    heart = ((uu - hu) / ha) ** 2 + ((vv - hv) / hb) ** 2 < 1.0
    mediastinum = (np.abs(uu - 0.02) < 0.11 + 0.06 * np.clip(vv, 0, 1)) & (vv > -0.75)

    # Diaphragm: two domes; below them lies the (bright) abdomen.
    dome = np.where(uu < 0,
                    a.dome_top[0] + 0.55 * (uu + 0.42) ** 2,
                    a.dome_top[1] + 0.55 * (uu - 0.42) ** 2)
    abdomen = body & (vv > dome)

    lungs = (_lung_field(u, v, 0, a) | _lung_field(u, v, 1, a))
    lungs &= body & ~heart & ~mediastinum & ~abdomen

    # Posterior ribs: arcs that leave the spine and fall laterally, thin bright bands.
    # The ten ribs are equally spaced, so the distance to the nearest one is a periodic function.
    t = np.abs(uu)
    k = (vv - a.rib_start + 0.12 * t - a.rib_tilt * t ** 2) / a.rib_step
    nearest = np.clip(np.rint(k), 0, 9)
    ribs = np.exp(-(((k - nearest) * a.rib_step) / 0.022) ** 2)
    ribs *= ((t > 0.07) & (t < 0.86) & body & (vv < dome + 0.1))
    # Clavicles: two oblique bands at the top.
    clav_centre = -0.78 + 0.25 * (t - 0.1)
    clavicles = np.exp(-((vv - clav_centre) / 0.03) ** 2) * ((t > 0.05) & (t < 0.6) & body)
    return {"body": body, "heart": heart, "mediastinum": mediastinum, "abdomen": abdomen,
            "lungs": lungs, "ribs": ribs, "clavicles": clavicles}


def _pick_point(rng: np.random.Generator, u, v, where: np.ndarray) -> tuple[float, float]:
    """A random pixel centre (u, v) among `where` (falls back to the image centre if empty)."""
    idx = np.flatnonzero(where)
    if idx.size == 0:
        return 0.0, 0.0
    i = idx[rng.integers(idx.size)]
    return float(u.flat[i]), float(v.flat[i])


def _draw_findings(rng, u, v, lungs: np.ndarray, findings, size: int) -> np.ndarray:
    """Added brightness of the findings, (S, S) float32, confined to the (softened) lung fields."""
    out = np.zeros(lungs.shape, np.float32)
    if not findings:
        return out
    px = 2.0 / size  # one pixel in normalised units
    depth = ndimage.distance_transform_edt(lungs) * px          # distance to the lung border
    soft_lungs = ndimage.gaussian_filter(lungs.astype(np.float32), sigma=max(1.0, 0.006 * size))

    if "Mass" in findings:
        r = rng.uniform(0.13, 0.18)
        cu, cv = _pick_point(rng, u, v, depth > 0.7 * r)
        theta = np.arctan2(v - cv, u - cu)
        lobes = 1 + 0.12 * np.cos(3 * theta + rng.uniform(0, 2 * np.pi))
        out += rng.uniform(0.40, 0.50) * _soft_disk(u, v, cu, cv, r * lobes, edge=0.12)
    if "Nodule" in findings:
        for _ in range(int(rng.integers(3, 7))):
            r = rng.uniform(0.032, 0.05)
            cu, cv = _pick_point(rng, u, v, depth > r)
            out += rng.uniform(0.32, 0.45) * _soft_disk(u, v, cu, cv, r, edge=0.2)
    if "Pneumonia" in findings:
        for _ in range(int(rng.integers(1, 3))):
            cu, cv = _pick_point(rng, u, v, lungs & (v > -0.1))
            region = np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * rng.uniform(0.11, 0.16) ** 2))
            patches = np.clip(_smooth_noise(rng, size, 0.02) * 0.5 + 0.85, 0, 1.4)
            out += rng.uniform(0.40, 0.52) * region * patches
    if "Edema" in findings:
        haze = np.zeros_like(out)
        for sign in (-1.0, 1.0):
            hilum_u = sign * rng.uniform(0.16, 0.24)
            hilum_v = rng.uniform(-0.05, 0.1)
            haze += np.exp(-(((u - hilum_u) / 0.26) ** 2 + ((v - hilum_v) / 0.34) ** 2))
        streaks = 0.8 + 0.2 * _smooth_noise(rng, size, 0.01)
        out += rng.uniform(0.30, 0.38) * haze * streaks
    if "Fibrosis" in findings:
        hf = _smooth_noise(rng, size, 0.01)
        net = np.exp(-(hf / 0.45) ** 2)                          # coarse lines on zero-crossings
        periphery = np.exp(-depth / 0.1) * (0.5 + 0.5 * np.clip(v + 0.3, 0, 1))
        out += rng.uniform(0.36, 0.44) * (0.5 + net) * periphery
    return out * soft_lungs


def _stamp_glyph(img: np.ndarray, letter: str, corner: int, value: float) -> None:
    """Draw a bright marker letter into a top corner of `img` in place."""
    size = img.shape[0]
    glyph = np.array([[c == "X" for c in row] for row in _GLYPHS[letter]], np.float32)
    block = max(1, size // 80)
    glyph = np.kron(glyph, np.ones((block, block), np.float32))
    gh, gw = glyph.shape
    top = max(1, size // 24)
    left = top if corner == 0 else size - top - gw
    patch = img[top:top + gh, left:left + gw]
    img[top:top + gh, left:left + gw] = np.maximum(patch, glyph[: patch.shape[0], : patch.shape[1]]
                                                   * value)


# The spurious cue: a ring with a central dot (like an ECG electrode) centred at (+-CUE_U, CUE_V),
# in the top corner opposite the side marker. It is a designed shortcut, so it is sized to stay a
# distinct object at the demo's 64 px classifier input: the ring is about 9 px across there, twice
# the side marker's 4 x 5 px (a ring a third this size shrank to a blob the marker's size and
# brightness, which a classifier cannot tell from the marker).
CUE_U, CUE_V = 0.8, -0.78
CUE_RADIUS, CUE_WIDTH, CUE_DOT = 0.11, 0.025, 0.035   # normalised units (image half-width = 1)
CUE_EXTENT = CUE_RADIUS + 2.5 * CUE_WIDTH             # beyond this the layer is below 0.002


def spurious_cue_layer(u, v, corner: int) -> np.ndarray:
    """The cue ring in top corner `corner` (0 left, 1 right): (S, S) float32, about 1 on the ring
    and the dot, 0 elsewhere. u, v: pixel-centre coordinates from `_grid`."""
    cu = -CUE_U if corner == 0 else CUE_U
    d = np.hypot(u - cu, v - CUE_V)
    return (np.exp(-((d - CUE_RADIUS) / CUE_WIDTH) ** 2) + (d < CUE_DOT)).astype(np.float32)


def cue_corner(anatomy: Anatomy) -> int:
    """The top corner that carries the cue: the one opposite the side marker."""
    return 1 - anatomy.marker_corner


def cue_box(corner: int) -> tuple[float, float, float, float]:
    """The square holding the cue of top corner `corner`, as (x0, y0, x1, y1) fractions of the
    image side (x left to right, y top to bottom), the same at every pixel size."""
    cu = -CUE_U if corner == 0 else CUE_U
    def frac(t):
        return float(np.clip((t + 1) / 2, 0, 1))
    return (frac(cu - CUE_EXTENT), frac(CUE_V - CUE_EXTENT), frac(cu + CUE_EXTENT),
            frac(CUE_V + CUE_EXTENT))


def render(rng: np.random.Generator, anatomy: Anatomy, size: int = 256,
           findings: tuple[str, ...] = (), cue: bool = False) -> Phantom:
    """Draw one image of `anatomy` with `findings` (subset of FINDINGS); `cue` adds the spurious
    ring.

    Returns a Phantom with the image (S, S) uint8, the lung mask and the body mask (S, S) uint8 0/1.
    """
    unknown = set(findings) - set(FINDINGS)
    if unknown:
        raise ValueError(f"unknown finding(s) {sorted(unknown)}; expected a subset of {FINDINGS}")
    u, v = _grid(size)
    # Per-image positioning jitter: the same patient never lies exactly the same way twice.
    jitter = Anatomy(**{**anatomy.__dict__,
                        "shift": (anatomy.shift[0] + rng.uniform(-0.02, 0.02),
                                  anatomy.shift[1] + rng.uniform(-0.02, 0.02)),
                        "scale": anatomy.scale * rng.uniform(0.98, 1.02)})
    layers = _anatomy_layers(u, v, jitter)
    body, lungs = layers["body"], layers["lungs"]

    texture = _smooth_noise(rng, size, 0.012)
    img = np.full((size, size), 0.04, np.float32)
    img += body * (0.50 + 0.03 * texture)
    dense = layers["mediastinum"] * 0.22 + layers["heart"] * 0.22 + layers["abdomen"] * 0.12
    img += ndimage.gaussian_filter(dense.astype(np.float32), sigma=max(0.5, 0.006 * size))
    soft_lungs = ndimage.gaussian_filter(lungs.astype(np.float32), sigma=max(1.0, 0.01 * size))
    vessels = np.clip(_smooth_noise(rng, size, 0.006), 0, None) * 0.035
    img -= soft_lungs * (0.34 - vessels)
    img += (layers["ribs"] * 0.11 + layers["clavicles"] * 0.16) * body
    img += _draw_findings(rng, u, v, lungs, findings, size)
    if cue:
        img = np.maximum(img, 0.95 * spurious_cue_layer(u, v, cue_corner(anatomy)))

    # Exposure: contrast, brightness and gamma vary per image; then quantum noise.
    img = np.clip(img, 0, 1)
    img = img ** rng.uniform(0.8, 1.25)
    img = img * rng.uniform(0.85, 1.1) + rng.uniform(-0.05, 0.05)
    img += rng.normal(0, rng.uniform(0.012, 0.03), img.shape).astype(np.float32)
    _stamp_glyph(img, anatomy.marker, anatomy.marker_corner, 0.97)
    image = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return Phantom(image=image, lungs=lungs.astype(np.uint8), body=body.astype(np.uint8),
                   findings=tuple(findings), cue=cue)
