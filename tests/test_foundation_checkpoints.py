"""The checkpoint rules both training loops share (cxrstats.foundation.checkpoints: atomic save, the
one guarded load, the --resume policy), the readers of classifier weights that go through it, and
early stopping (cxrseg.early_stopping)."""
from __future__ import annotations

import hashlib
import math
import zipfile

import pytest
import torch

from cxrcls import models, weights
from cxrcls.imagenet_files import IMAGENET_FILES
from cxrstats.foundation.checkpoints import load_checkpoint, read_resume, restoring, save_checkpoint
from cxrseg.early_stopping import EarlyStopping

SETTINGS = {"lr": 1e-3, "seed": 0}


class _RunsCode:
    """Pickles as a call to eval(); the guarded load must refuse it instead of running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


def _last(path, **extra):
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 1, "config": SETTINGS,
                           **extra})
    return path


def test_save_is_atomic_and_loads_back(tmp_path, monkeypatch):
    path = _last(tmp_path / "last.pt")
    assert load_checkpoint(path)["epoch"] == 1 and not list(tmp_path.glob("*.tmp"))

    def killed(obj, f):  # the process dies half-way through writing
        f.write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1 and not list(tmp_path.glob("*.tmp"))


def as_saved_on_cuda(path) -> None:
    """Rewrite a torch.save file in place so that every tensor in it is recorded on cuda:0, as a
    run on a GPU saves an optimizer state (what torch.load without map_location needs a GPU for)."""
    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in members:
            if info.filename.endswith("/data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data  # the pickled storage location
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            z.writestr(info, data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_checkpoint_saved_on_a_gpu_loads_on_a_machine_without_one(tmp_path):
    path = _last(tmp_path / "last.pt", optimizer={"state": {0: {"step": torch.tensor(3.0)}}})
    as_saved_on_cuda(path)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)  # the file is now as a GPU run leaves it
    state = load_checkpoint(path)
    assert state["model"]["w"].device.type == "cpu"
    assert state["optimizer"]["state"][0]["step"].device.type == "cpu"


def test_resume_policy_names_the_file(tmp_path):
    missing = tmp_path / "nothing" / "last.pt"
    with pytest.raises(FileNotFoundError, match=r"nothing/last.pt: --resume given but there is "
                                                r"no last.pt"):
        read_resume(missing, SETTINGS, settings_key="config", required=["model"], stage="x")
    path = _last(tmp_path / "last.pt")
    state = read_resume(path, SETTINGS, settings_key="config", required=["model", "epoch"],
                        stage="x")
    assert state["epoch"] == 1
    with pytest.raises(ValueError, match=r"last.pt: not a cxrcls.train last.pt \(missing "
                                         r"\['aug_rng'\]\)"):
        read_resume(path, SETTINGS, settings_key="config", required=["model", "aug_rng"],
                    stage="cxrcls.train")
    with pytest.raises(ValueError, match=r"last.pt: cannot resume with different settings "
                                         r"\{'lr': \(0.001, 0.5\)\} \(saved, given\)"):
        read_resume(path, {**SETTINGS, "lr": 0.5}, settings_key="config", required=["model"],
                    stage="x")
    with pytest.raises(ValueError, match=r"last.pt: cannot restore the training state"):
        with restoring(path):
            torch.nn.Linear(2, 2).load_state_dict(load_checkpoint(path)["model"])


def test_classifier_weights_are_read_through_the_guarded_load(tmp_path, monkeypatch):
    marker = tmp_path / "code_ran"
    torch.save({"model": {}, "hook": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil.pt: refused to load"):
        models.load_weights(models.Classifier("resnet18"), tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match=r"absent.pt: checkpoint file not found"):
        models.load_weights(models.Classifier("resnet18"), tmp_path / "absent.pt")
    # An ImageNet file whose name carries its own hash (so the hash check passes) but holds code.
    tmp = tmp_path / "tmp.pth"
    torch.save({"hook": _RunsCode(marker)}, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    tmp.rename(tmp_path / f"resnet18-{digest}.pth")
    monkeypatch.setenv("IMAGENET_DIR", str(tmp_path))
    monkeypatch.setitem(IMAGENET_FILES, "resnet18", f"resnet18-{digest}.pth")
    with pytest.raises(ValueError, match=rf"resnet18-{digest}.pth: refused to load"):
        weights.imagenet_state_dict("resnet18")
    assert not marker.exists()


def test_early_stopping_is_strict_patient_and_either_way():
    auroc = EarlyStopping(patience=2, higher_is_better=True)
    assert [auroc.update(e, s) for e, s in enumerate([0.6, 0.7, 0.7, 0.65], 1)] == [
        True, True, False, False]
    assert auroc.stopped and (auroc.best, auroc.best_epoch, auroc.bad_epochs) == (0.7, 2, 2)
    loss = EarlyStopping(patience=1, higher_is_better=False, best=0.5)  # epoch 0 is the start
    assert not loss.update(1, math.nan) and loss.stopped and loss.best_epoch == 0
    resumed = EarlyStopping(patience=3, higher_is_better=False, best=0.5, bad_epochs=1)
    assert resumed.update(2, 0.4) and (resumed.best_epoch, resumed.bad_epochs) == (2, 0)
