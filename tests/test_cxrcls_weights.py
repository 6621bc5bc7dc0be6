"""ImageNet weights come from the project's weights folder, checked by hash; nothing downloads."""
import hashlib
import socket

import pytest
import torch
import torchvision

from cxrcls import train, weights
from cxrcls.models import build_model


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection (every download goes through one) or to call torch's
    downloader fails the test loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def saved_like_torchvision(state, folder, stem):
    """Save `state` as torchvision names its files: <stem>-<first 8 hex of sha256>.pth."""
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    name = f"{stem}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    return tmp.rename(folder / name)


def test_training_without_fetched_weights_stops_first_naming_make_weights(
        tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path / "none_here")
    with pytest.raises(AssertionError, match="network connection was attempted"):
        socket.create_connection(("localhost", 9))  # the block holds (nothing is sent)
    with pytest.raises(SystemExit, match=r"error: ImageNet weights for resnet50 not found.*"
                                         r"make weights"):
        train.main(["--work", str(tmp_path / "no_work_needed"), "--arch", "resnet50",
                    "--weights", "imagenet", "--device", "cpu"])


def test_old_densenet_key_names_load_and_a_broken_file_is_refused(tmp_path, monkeypatch,
                                                                  no_network):
    reference = torchvision.models.densenet121(weights=None).state_dict()
    old_names = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
                 for k, v in reference.items()}
    assert old_names.keys() != reference.keys()
    path = saved_like_torchvision(old_names, tmp_path, "densenet121")
    # only the address's file name is used: where the weights live in the weights folder
    monkeypatch.setattr(weights, "weights_url", lambda arch: f"torchvision-models/{path.name}")
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    model = build_model("densenet121", "imagenet")
    loaded = model.net.state_dict()
    head = {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(loaded[k], reference[k]) for k in reference if k not in head)
    path.write_bytes(path.read_bytes()[:-10])  # a partial download
    with pytest.raises(ValueError, match="does not match.*make weights"):
        build_model("densenet121", "imagenet")
