"""vendor_medsam model code vs the official models: state-dict manifests and the micro/tiny
reference outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vendor_medsam import build_sam, load_medsam
from vendor_medsam.transforms import InputFrame

FIX = Path(__file__).resolve().parent / "fixtures" / "vendor_medsam"
SHARED_REF = Path(__file__).resolve().parents[2] / "shared" / "reference"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

CASES = {  # reference case name -> which prompts it uses
    "box": ("boxes",),
    "points": ("points",),
    "points_box": ("points", "boxes"),
    "box_mask": ("boxes", "masks"),
}


def _manifest(path: Path) -> list[tuple[str, list[int], str]]:
    return [(k, v["shape"], v["dtype"]) for k, v in json.loads(path.read_text()).items()]


def _model_manifest(config: str) -> list[tuple[str, list[int], str]]:
    with torch.device("meta"):  # shapes only, no memory for ViT-B's 94 M parameters
        model = build_sam(config)
    return [(k, list(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in model.state_dict().items()]


@pytest.mark.parametrize("config, manifest", [
    ("vit_b", "sam_vit_b_state_dict_shapes.json"),
    ("lite", "lite_medsam/state_dict_shapes.json"),
    ("micro", "micro_sam/state_dict_shapes.json"),
])
def test_state_dict_matches_official_manifest(config, manifest):
    ours, ref = _model_manifest(config), _manifest(FIX / manifest)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):  # keys, order, shapes and dtypes
        assert a == tuple(b), f"{config}: ours {a} vs official {b}"


def test_vit_b_parameter_count():
    with torch.device("meta"):
        model = build_sam("vit_b")
    assert sum(p.numel() for p in model.parameters()) == 93_735_472
    assert model.img_size == 1024 and model.family == "medsam" and model.low_res_size == 256


def _prompts(io, names, prefix=""):
    def t(k):
        return torch.from_numpy(io[k])

    return dict(
        boxes=t("boxes") if "boxes" in names else None,
        points=(t("point_coords"), t("point_labels")) if "points" in names else None,
        masks=t("mask_inputs") if "masks" in names else None,
    )


def _check_reference(model, io, atol):
    """Every stored output of the reference io.npz (micro or tiny) within `atol`."""
    def t(k):
        return torch.from_numpy(io[k])

    images = t("images")
    with torch.inference_mode():
        emb = model.image_encoder(images)
        torch.testing.assert_close(emb, t("image_embeddings"), atol=atol, rtol=0)
        torch.testing.assert_close(model.prompt_encoder.get_dense_pe(), t("dense_pe"), atol=atol,
                                   rtol=0)
        for case, names in CASES.items():
            p = _prompts(io, names)
            sparse, dense = model.prompt_encoder(p["points"], p["boxes"], p["masks"])
            torch.testing.assert_close(sparse, t(f"{case}_sparse"), atol=atol, rtol=0,
                                       msg=f"{case} sparse")
            # tiny_sam stores the dense embedding only where it differs from "no mask" (box_dense)
            ref_dense = t(f"{case}_dense") if f"{case}_dense" in io else t("box_dense")
            torch.testing.assert_close(dense, ref_dense, atol=atol, rtol=0, msg=f"{case} dense")
            for mode in ("single", "multi"):
                # full forward path
                logits, iou = model(images, multimask_output=mode == "multi", **p)
                ref_logits = t(f"{case}_{mode}_low_res_logits")
                torch.testing.assert_close(logits, ref_logits, atol=atol, rtol=0,
                                           msg=f"{case} {mode} logits")
                torch.testing.assert_close(iou, t(f"{case}_{mode}_iou_predictions"), atol=1e-5,
                                           rtol=0, msg=f"{case} {mode} iou")
                key = f"{case}_{mode}_masks_prob"
                if key in io:
                    frame = InputFrame.for_model(model, model.img_size, model.img_size)
                    torch.testing.assert_close(frame.probabilities(logits), t(key), atol=1e-5,
                                               rtol=0, msg=key)


def test_micro_reproduces_reference_outputs():
    model = load_medsam(FIX / "micro_sam" / "state_dict.pt", "micro")
    _check_reference(model, np.load(FIX / "micro_sam" / "io.npz"), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_REF / "tiny_sam" / "io.npz").is_file(),
                    reason="../shared/reference/tiny_sam absent")
def test_tiny_reproduces_reference_outputs():
    """The 256x256 tiny_sam (window 5: 16x16 grid padded to 20x20) and its one-image, three-box
    case.
    """
    model = load_medsam(SHARED_REF / "tiny_sam" / "state_dict.pt", "tiny")
    io = np.load(SHARED_REF / "tiny_sam" / "io.npz")
    _check_reference(model, io, atol=1e-4)
    with torch.inference_mode():
        emb = model.image_encoder(torch.from_numpy(io["images"][:1]))
        logits, iou = model.decode(emb, boxes=torch.from_numpy(io["multibox_boxes"]))
    ref_logits = torch.from_numpy(io["multibox_img0_single_low_res_logits"])
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=0)


def test_forward_trains():
    """Gradients reach the encoder, prompt encoder and decoder: nothing inside forward disables
    autograd.
    """
    torch.manual_seed(0)
    model = load_medsam(FIX / "micro_sam" / "state_dict.pt", "micro").train()
    io = np.load(FIX / "micro_sam" / "io.npz")
    logits, iou = model(torch.from_numpy(io["images"]), multimask_output=False,
                        **_prompts(io, ("points", "boxes", "masks")))
    assert logits.requires_grad and iou.requires_grad
    target = (torch.rand_like(logits) > 0.5).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + iou.pow(2).mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for prefix in ("image_encoder.", "mask_decoder.transformer.",
                   "prompt_encoder.mask_downscaling."):
        names = [n for n in grads if n.startswith(prefix)]
        assert names and all(grads[n] is not None for n in names), prefix
    for name in ("image_encoder.patch_embed.proj.weight", "image_encoder.blocks.0.attn.rel_pos_h",
                 "prompt_encoder.point_embeddings.2.weight",
                 "prompt_encoder.point_embeddings.1.weight",
                 "mask_decoder.output_hypernetworks_mlps.0.layers.2.weight"):
        assert grads[name].abs().sum() > 0, name
    # One SGD step changes the output.
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    new_logits, _ = model(torch.from_numpy(io["images"]),
                          **_prompts(io, ("points", "boxes", "masks")))
    assert not torch.allclose(new_logits, logits)


def test_decode_pairs_rows_and_rejects_mismatch():
    model = load_medsam(FIX / "micro_sam" / "state_dict.pt", "micro")
    io = np.load(FIX / "micro_sam" / "io.npz")
    images, boxes = torch.from_numpy(io["images"]), torch.from_numpy(io["boxes"])
    with torch.inference_mode():
        emb = model.image_encoder(images)
        both, _ = model.decode(emb, boxes=boxes)
        second, _ = model.decode(emb[1:], boxes=boxes[1:])
        torch.testing.assert_close(both[1:], second, atol=1e-6, rtol=0)
        with pytest.raises(ValueError, match="cannot pair"):
            model.decode(emb, boxes=torch.cat([boxes, boxes]))
        with pytest.raises(ValueError, match="at least one prompt"):
            model.decode(emb)
        with pytest.raises(ValueError, match="expected images"):
            model(images[:, :, :32, :32], boxes=boxes)
