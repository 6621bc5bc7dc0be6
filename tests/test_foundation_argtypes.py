"""The command-line rule shared by every CLI: a single-valued flag given twice is refused."""
import argparse
import importlib
import pkgutil

import pytest

from cxrstats.foundation.argtypes import REPEATABLE_ACTIONS, Parser, int_range

PACKAGES = ("cxrseg", "cxrcls", "cxrstats")


def cli_modules() -> list[str]:
    """Every module of the toolkit's packages that defines a command line (`build_parser`)."""
    found = []
    for package in PACKAGES:
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            name = f"{package}.{info.name}"
            source = importlib.util.find_spec(name).origin
            with open(source) as f:
                if "def build_parser(" in f.read():
                    found.append(name)
    return found


def toy_parser() -> Parser:
    parser = Parser(prog="toy")
    parser.add_argument("--split-by", choices=["image", "patient"], default="image")
    parser.add_argument("--seed", type=int_range(-1), default=0)
    parser.add_argument("--dilate", type=int, nargs="+", default=[15, 50])
    parser.add_argument("--fill-holes", action="store_true")
    parser.add_argument("--data", action="append")
    return parser


def usage_error(parser, argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_a_flag_given_twice_is_refused_naming_both_values(capsys):
    err = usage_error(toy_parser(), ["--split-by", "patient", "--split-by", "image"], capsys)
    assert "--split-by given twice" in err
    assert "patient" in err and "image" in err


@pytest.mark.parametrize("argv", [
    ["--seed=3", "--seed", "-1"],                 # = form, and a negative value
    ["--dilate", "15", "50", "--dilate", "30"],   # a list flag: the first list would be lost
    ["--fill-holes", "--fill-holes"],             # a switch
])
def test_every_single_valued_form_is_refused(argv, capsys):
    assert "given twice" in usage_error(toy_parser(), argv, capsys)


def test_flags_meant_to_repeat_and_single_flags_still_parse():
    args = toy_parser().parse_args(["--data", "a=x:y", "--data", "b=z:w", "--seed", "-1",
                                    "--dilate", "15", "30", "--split-by", "patient"])
    assert args.data == ["a=x:y", "b=z:w"] and args.seed == -1 and args.dilate == [15, 30]
    assert args.split_by == "patient"


def test_an_abbreviated_flag_is_refused(capsys):
    assert "unrecognized arguments" in usage_error(toy_parser(), ["--split", "patient"], capsys)


def test_the_walk_finds_every_stage():
    modules = cli_modules()
    for expected in ("cxrcls.cohort", "cxrcls.train", "cxrseg.predict", "cxrseg.gather",
                     "cxrstats.report", "cxrstats.compare"):
        assert expected in modules
    assert len(modules) >= 15


@pytest.mark.parametrize("module", cli_modules())
def test_every_cli_refuses_each_of_its_single_valued_flags_twice(module, capsys):
    parser = importlib.import_module(module).build_parser()
    assert isinstance(parser, Parser), f"{module} does not build its parser with Parser"
    single = [a for a in parser._actions
              if a.option_strings and not isinstance(a, REPEATABLE_ACTIONS)]
    assert single, f"{module} has no single-valued flag"
    for action in single:
        flag = action.option_strings[-1]
        value = [] if action.nargs == 0 else ["1"]
        err = usage_error(parser, [flag, *value, flag, *value], capsys)
        assert f"{flag} given twice" in err, (module, flag, err)


def test_repeatable_actions_are_the_argparse_ones():
    assert all(issubclass(a, argparse.Action) for a in REPEATABLE_ACTIONS)
