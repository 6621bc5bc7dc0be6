"""ImageNet weights come from the project's weights folder, checked by hash; nothing downloads."""
import hashlib
import socket
import urllib.error

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


def test_fetch_without_the_network_says_which_file_to_copy_where(tmp_path, monkeypatch, capsys):
    """`make weights` on a compute node: the error names the file, where it comes from and the
    folder to copy it into; nothing half-downloaded stays behind."""
    def offline(url, dst, progress=True):
        with open(dst, "wb") as f:
            f.write(b"partial")
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("IMAGENET_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        weights.main(["--archs", "resnet50"])
    message = str(stop.value)
    for part in ("cannot download https://download.pytorch.org/models/resnet50-0676ba61.pth",
                 "Temporary failure in name resolution",
                 "copy resnet50-0676ba61.pth from one that has it",
                 "~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth",
                 f"into {tmp_path}/", "run `make weights` again"):
        assert part in message, message
    assert list(tmp_path.iterdir()) == []


def test_two_fetches_of_one_file_at_once_both_end_with_the_checked_file(tmp_path, monkeypatch):
    """Two jobs run `make weights` (or `make setup PROFILE=paper`) at once: the second downloads
    while the first is downloading; each downloads into a file of its own, so both end with the
    checked file and no temporary file stays behind."""
    state_file = saved_like_torchvision({"w": torch.ones(3)}, tmp_path, "resnet18")
    content = state_file.read_bytes()
    folder = tmp_path / "weights"
    monkeypatch.setitem(IMAGENET_FILES, "resnet18", state_file.name)
    monkeypatch.setenv("IMAGENET_DIR", str(folder))
    calls = []

    def download(url, dst, progress=True):
        with open(dst, "wb") as f:
            f.write(content)
        calls.append(dst)
        if len(calls) == 1:  # the other job's whole fetch, while this one is under way
            weights.fetch(["resnet18"])
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    assert weights.fetch(["resnet18"]) == [folder / state_file.name]
    assert len(calls) == 2 and calls[0] != calls[1]
    assert list(folder.iterdir()) == [folder / state_file.name]


def test_make_weights_with_the_files_in_place_only_checks_them(tmp_path, monkeypatch, capsys,
                                                               no_network):
    """Files copied in by hand: `make weights` checks their hashes and downloads nothing."""
    path = saved_like_torchvision({"w": torch.zeros(2)}, tmp_path, "resnet18")
    monkeypatch.setitem(IMAGENET_FILES, "resnet18", path.name)
    monkeypatch.setenv("IMAGENET_DIR", str(tmp_path))
    weights.main(["--archs", "resnet18"])
    assert f"weights: {path} ok" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(SystemExit, match="does not match"):
        weights.main(["--archs", "resnet18"])
