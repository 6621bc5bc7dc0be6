"""ImageNet weights come from the project's weights folder, checked by hash; nothing downloads."""
import hashlib
import socket

import pytest
import torch
import torchvision

from cxrcls import train, weights
from cxrcls.imagenet_files import IMAGENET_FILES, missing
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
    monkeypatch.setenv("IMAGENET_DIR", str(tmp_path / "none_here"))
    with pytest.raises(AssertionError, match="network connection was attempted"):
        socket.create_connection(("localhost", 9))  # the block holds (nothing is sent)
    with pytest.raises(SystemExit, match=r"error: ImageNet weights for resnet50 not found "
                                         r".*none_here/resnet50-0676ba61.pth.*make weights"):
        train.main(["--work", str(tmp_path / "no_work_needed"), "--arch", "resnet50",
                    "--weights", "imagenet", "--device", "cpu"])


def test_old_densenet_key_names_load_and_a_broken_file_is_refused(tmp_path, monkeypatch,
                                                                  no_network):
    reference = torchvision.models.densenet121(weights=None).state_dict()
    old_names = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
                 for k, v in reference.items()}
    assert old_names.keys() != reference.keys()
    path = saved_like_torchvision(old_names, tmp_path, "densenet121")
    monkeypatch.setitem(IMAGENET_FILES, "densenet121", path.name)
    monkeypatch.setenv("IMAGENET_DIR", str(tmp_path))
    model = build_model("densenet121", "imagenet")
    loaded = model.net.state_dict()
    head = {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(loaded[k], reference[k]) for k in reference if k not in head)
    path.write_bytes(path.read_bytes()[:-10])  # a partial download
    with pytest.raises(ValueError, match="does not match.*make weights"):
        build_model("densenet121", "imagenet")


def test_the_file_names_are_torchvisions_and_imagenet_dir_sets_the_folder(tmp_path, monkeypatch):
    for arch, enum in [("resnet50", "ResNet50_Weights"), ("densenet121", "DenseNet121_Weights"),
                       ("resnet18", "ResNet18_Weights")]:
        url = torchvision.models.get_weight(f"{enum}.IMAGENET1K_V1").url
        assert weights.weights_url(arch) == url
    monkeypatch.setenv("IMAGENET_DIR", str(tmp_path))
    # another file of the same backbone (a newer torchvision release) is not the one read
    (tmp_path / "resnet50-11ad3fa6.pth").touch()
    assert missing(["resnet50"]) == f"missing {tmp_path / 'resnet50-0676ba61.pth'}"
    with pytest.raises(ValueError, match="resnet50-0676ba61.pth"):
        weights.require_imagenet("resnet50")
    (tmp_path / "resnet50-0676ba61.pth").touch()
    assert missing(["resnet50"]) == "" and weights.require_imagenet("resnet50").parent == tmp_path
    assert "no ImageNet weights known for 'vit'" in missing(["resnet50", "vit"])
