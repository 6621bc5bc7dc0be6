"""The input-name grammar (cxrstats.foundation.input_names), and every place that reads it agreeing
with it: cxrcls.inputs (training CLI), cxrstats.runs (report order), cxrstats.tightness (radius
curves) and the INPUTS check in profiles/pipeline.mk (which runs the module's file)."""
import argparse
import re

import pytest

from cxrcls.inputs import INPUTS, check_input, input_type
from cxrstats.foundation.input_names import is_input_name, mask_radius
from cxrstats.runs import input_order
from cxrstats.tightness import radius_of
from makeutil import HAVE_MAKE, run_make

MASKED = {"m0": 0, "m1": 1, "m7": 7, "m15": 15, "m50": 50, "m100": 100, "m9999": 9999}
# Not inputs, though each starts with "m": leading zeros, signs, fractions, letters, a non-ASCII
# digit (r"\d" would take it), and the bare "m".
BAD_MASKED = ["m", "m00", "m07", "m015", "m-1", "m+1", "m1.5", "m1e3", "mx", "m15x", "mask15",
              "m\u0663"]
OTHER_BAD = ["M15", "m15 ", "m15\n", " m15", "originals", "Original", "", "none"]


@pytest.mark.parametrize("name,radius", MASKED.items())
def test_masked_names_give_their_radius(name, radius):
    assert mask_radius(name) == radius
    assert is_input_name(name) and name in INPUTS and check_input(name) == name
    assert input_type(name) == name
    assert input_order(name) == (1, radius, "")
    assert radius_of(f"resnet50_{name}") == ("resnet50", radius)


@pytest.mark.parametrize("name", ["original", "overlay"])
def test_plain_names_are_inputs_without_a_radius(name):
    assert mask_radius(name) is None
    assert is_input_name(name) and name in INPUTS and check_input(name) == name


@pytest.mark.parametrize("name", BAD_MASKED + OTHER_BAD)
def test_other_names_are_refused_everywhere(name):
    assert mask_radius(name) is None and not is_input_name(name) and name not in INPUTS
    with pytest.raises(ValueError, match="unknown input"):
        check_input(name)
    with pytest.raises(argparse.ArgumentTypeError):
        input_type(name)
    assert input_order(name) == (3, 0, name)          # the report sorts unknown names last
    assert radius_of(f"resnet50_{name}") is None      # and tightness leaves them out


def test_non_strings_are_not_inputs():
    for value in (15, None, ["m15"]):
        assert mask_radius(value) is None and not is_input_name(value) and value not in INPUTS


@pytest.mark.skipif(not HAVE_MAKE, reason="GNU make not installed")
def test_makefile_inputs_check_accepts_exactly_the_masked_names(tmp_path):
    """pipeline.mk checks INPUTS at parse time for every goal; `clean-work -n` runs nothing else."""
    def refused(names):
        result = run_make("-n", f"WORK={tmp_path / 'w'}", "PROFILE=tiny",
                          "INPUTS=" + " ".join(["original", "overlay", *names]), "clean-work",
                          check=False)
        found = re.search(r"INPUTS=.*?: (.*): not an input name", result.stderr)
        assert (result.returncode != 0) == bool(found), result.stderr
        return found.group(1).split() if found else []

    assert refused(list(MASKED)) == []
    assert sorted(refused([*MASKED, *BAD_MASKED])) == sorted(BAD_MASKED)
