"""One progress line for every long loop (cxrstats.foundation.progress)."""
from cxrstats.foundation.progress import Progress, format_seconds


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_line_at_most_every_few_seconds_and_none_for_the_last_item():
    clock, lines = Clock(), []
    progress = Progress(10, "predict", "images", every_s=5, clock=clock,
                        log=lambda line, flush: lines.append(line))
    clock.now += 4
    assert not progress.update(2)                      # too soon
    clock.now += 1
    assert progress.update(4, "loss 0.5")              # 4 images in 5 s
    clock.now += 1
    assert not progress.update(5)                      # 1 s after the last line
    clock.now += 20
    assert not progress.update(10)                     # the caller sums the loop up
    assert lines == ["predict: 4/10 images, 0.80 images/s, ETA 0m08s, loss 0.5"]


def test_every_zero_prints_each_update_and_rates_stay_readable():
    clock, lines = Clock(), []
    progress = Progress(5000, "postprocess", "masks", every_s=0, clock=clock,
                        log=lambda line, flush: lines.append(line))
    clock.now += 2
    progress.update(100)
    progress.update(200)
    assert lines == ["postprocess: 100/5000 masks, 50.0 masks/s, ETA 1m38s",
                     "postprocess: 200/5000 masks, 100.0 masks/s, ETA 0m48s"]


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 42.4, 605, 3600, 7380)] == [
        "0m00s", "0m42s", "10m05s", "1h00m", "2h03m"]
