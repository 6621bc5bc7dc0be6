"""cxrseg.predict --shard K/N and cxrseg.gather: N shards joined give exactly the unsharded masks,
index and prompts; an incomplete, mixed or foreign set of shards is refused by name."""
import json

import numpy as np
import pytest

from cliargs import with_flags
from cxrseg import gather, predict
from cxrseg.predict import shard_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def _stack(root, n=7, h=40, w=36, seed=0):
    """n noisy images with two bright 'lungs', as a cache stack + index.csv, and a prior."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    m[8:32, 4:15] = 1
    m[8:32, 20:32] = 1
    images = np.stack([(rng.normal(60, 10, (h, w)) + 120 * m).clip(0, 255) for _ in range(n)])
    np.save(root / "images.npy", images.astype(np.uint8))
    (root / "index.csv").write_text("row,image\n" + "".join(f"{i},im{i}.png\n" for i in range(n)))
    (root / "prior.json").write_text(json.dumps({"box": [0.1, 0.2, 0.9, 0.8], "points": []}))
    return root


def _predict(root, out, *extra):
    predict.main(with_flags(
        ["--images", str(root / "images.npy"), "--index", str(root / "index.csv"),
         "--checkpoint", "micro", "--prior", str(root / "prior.json"), "--refine", "1",
         "--threshold", "0.45", "--batch-size", "2", "--out", str(out), "--device", "cpu"],
        *extra))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = _stack(tmp_path_factory.mktemp("shards"))
    _predict(root, root / "whole" / "raw.npy")
    for k in range(3):
        _predict(root, root / "shards" / f"{k}of3" / "raw.npy", "--shard", f"{k}/3")
    return root


def test_shard_rows_cover_every_row_once_in_order():
    for n in (1, 7, 120, 10486):
        for parts in range(1, min(n, 9) + 1):
            rows = [i for k in range(parts) for i in shard_rows(n, (k, parts))]
            sizes = [len(shard_rows(n, (k, parts))) for k in range(parts)]
            assert rows == list(range(n)) and max(sizes) - min(sizes) <= 1


def test_gathered_shards_equal_the_unsharded_prediction(shards):
    out = shards / "joined" / "raw.npy"
    gather.main(["--shards", *(str(shards / "shards" / f"{k}of3") for k in (2, 0, 1)),
                 "--out", str(out)])
    whole = shards / "whole"
    assert np.load(out).shape == (7, 40, 36)
    np.testing.assert_array_equal(np.load(out), np.load(whole / "raw.npy"))
    for name in ("index.csv", "prompts.csv"):
        assert (out.parent / name).read_text() == (whole / name).read_text(), name
    done = json.loads((out.parent / "done_predict.json").read_text())
    assert done["images"] == 7 and done["threshold"] == 0.45 and len(done["shards"]) == 3
    first = np.load(shards / "shards" / "0of3" / "raw.npy")
    assert len(first) == 2       # rows 0..1 of 7


def test_gather_refuses_missing_mixed_or_unfinished_shards(shards, tmp_path):
    folders = [shards / "shards" / f"{k}of3" for k in range(3)]
    out = str(tmp_path / "m" / "raw.npy")
    with pytest.raises(SystemExit, match=r"shards must be 0..N-1.*1of3 \(1/3\)"):
        gather.main(["--shards", str(folders[0]), str(folders[1]), "--out", out])
    with pytest.raises(SystemExit, match=r"shards must be 0..N-1"):
        gather.main(["--shards", str(folders[0]), str(folders[0]), str(folders[1]),
                     "--out", out])
    with pytest.raises(SystemExit, match=r"whole: not a shard"):
        gather.main(["--shards", str(shards / "whole"), "--out", out])
    other = tmp_path / "other"
    _predict(shards, other / "raw.npy", "--shard", "2/3", "--refine", "0")
    with pytest.raises(SystemExit, match=r"other: made with other arguments .*refine"):
        gather.main(["--shards", str(folders[0]), str(folders[1]), str(other), "--out", out])
    (other / "done_predict.json").unlink()      # as if the shard's process had been killed
    with pytest.raises(SystemExit, match=r"other.*done_predict.json"):
        gather.main(["--shards", str(folders[0]), str(folders[1]), str(other), "--out", out])
    assert not (tmp_path / "m").exists()


def test_shard_flag_is_checked(shards, tmp_path):
    for bad in ("3/3", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(SystemExit):
            predict.build_parser().parse_args(["--images", "x", "--checkpoint", "micro",
                                               "--prior", "p", "--out", "o.npy", "--shard", bad])
    with pytest.raises(SystemExit, match=r"shard 0/8 of 7 images is empty"):
        _predict(shards, tmp_path / "s" / "raw.npy", "--shard", "0/8")
    with pytest.raises(SystemExit, match=r"--shard needs a .npy"):
        _predict(shards, tmp_path / "pngs", "--shard", "0/2")
