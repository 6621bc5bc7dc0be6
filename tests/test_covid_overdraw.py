"""experiments.covid_overdraw.over_under: the area a mask adds and misses, as shares of the
annotated area."""
import numpy as np

from experiments.covid_overdraw import over_under


def test_over_under_shares_of_the_annotated_area():
    truth = np.zeros((10, 10), bool)
    truth[0:5, 0:4] = True                  # 20 pixels
    pred = np.zeros((10, 10), bool)
    pred[0:5, 1:6] = True                   # adds 10 (columns 4-5), misses 5 (column 0)
    assert over_under(pred, truth) == (0.5, 0.25)
    assert over_under(truth, truth) == (0.0, 0.0)
    assert over_under(pred, np.zeros((10, 10), bool)) == (25.0, 0.0)   # no annotation: per pixel
