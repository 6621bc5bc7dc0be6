"""The lung-mask sets given as `NAME=IMAGES:MASKS[:SUFFIX]`: the one parse rule of `--data`
(cxrseg.split, finetune, evaluate; cxrseg.datasets reads it here) and of Make's SEG_DATA.

Standard library only, so that Make can run this file with the system Python before any stage:
`python3 cxrseg/sources.py --check SPEC...` prints, on one line, what is wrong with the specs
(their format, a dataset name given twice, an images or masks folder that does not exist), and
nothing when they are fine; `--folders SPEC...` prints their images and masks folders (those Make
can name in a rule: no space, ':' or '%'), the prerequisites of the segmentation split.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
POOLED = "all"   # dataset name of evaluate's rows pooling several datasets; no source may use it
FORMAT = "NAME=IMAGES:MASKS or NAME=IMAGES:MASKS:SUFFIX"


@dataclass(frozen=True)
class Source:
    """One dataset: its name, image folder, mask folder and mask-stem suffix."""
    name: str
    images: str
    masks: str
    mask_suffix: str = ""


def parse_source(text: str, where: str = "--data") -> Source:
    """`NAME=IMAGES:MASKS[:SUFFIX]` -> Source; a ValueError that names the format and the problem
    otherwise (`where`: what the text was given as, e.g. `--data` or Make's SEG_DATA). Colons
    inside folder paths are resolved by `split_folders`."""
    name, sep, rest = text.partition("=")
    if not sep:
        raise ValueError(f"{where} {text!r}: expected {FORMAT} (no '=' after the dataset name)")
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{where} {text!r}: dataset name {name!r} may hold only letters, digits "
                         "and . _ -")
    if name == POOLED:
        raise ValueError(f"{where} {text!r}: the dataset name {POOLED!r} is taken by the rows "
                         "pooling all datasets in eval.csv; choose another name")
    images, masks, suffix = split_folders(text, rest, where)
    return Source(name, images, masks, suffix)


def split_folders(text: str, rest: str, where: str = "--data") -> tuple[str, str, str]:
    """IMAGES, MASKS, SUFFIX of `rest` (the part after `NAME=` of `text`).

    The plain split (at each colon, one or two of them) is taken when its folders exist or no other
    split names existing folders; otherwise the one split whose IMAGES and MASKS are existing
    folders (a colon inside a folder path). None or several is a ValueError that says how to get
    around it."""
    pieces = rest.split(":")
    if len(pieces) < 2:
        raise ValueError(f"{where} {text!r}: expected {FORMAT} (IMAGES and MASKS separated by ':')")
    plain = None
    if len(pieces) in (2, 3) and pieces[0] and pieces[1]:
        plain = (pieces[0], pieces[1], pieces[2] if len(pieces) == 3 else "")
    candidates = [(":".join(pieces[:i]), ":".join(pieces[i:]), "") for i in range(1, len(pieces))]
    candidates += [(":".join(pieces[:i]), ":".join(pieces[i:-1]), pieces[-1])
                   for i in range(1, len(pieces) - 1)]
    existing = [c for c in candidates
                if c[0] and c[1] and Path(c[0]).is_dir() and Path(c[1]).is_dir()]
    if plain in existing or (plain and not existing):
        return plain          # a missing folder is reported when the pairs are read
    if len(existing) == 1:
        return existing[0]
    found = ("no split of it names two existing folders" if not existing else
             "several splits name existing folders: " + "; ".join(
                 f"IMAGES {c[0]!r} MASKS {c[1]!r}" + (f" SUFFIX {c[2]!r}" if c[2] else "")
                 for c in existing))
    raise ValueError(f"{where} {text!r}: expected {FORMAT}; the text after '=' has "
                     f"{len(pieces) - 1} colon(s) and {found}. A folder path may hold colons "
                     "when the folders exist and one split fits; otherwise link the folder under "
                     "a name without a colon (ln -s) and give that")


def problems(specs: list[str], where: str = "SEG_DATA") -> list[str]:
    """What is wrong with `specs` before any stage reads them: the format, a name given twice, and
    images or masks folders that do not exist (each named with its spec)."""
    found, names = [], []
    for text in specs:
        try:
            source = parse_source(text, where)
        except ValueError as error:
            found.append(str(error))
            continue
        if source.name in names:
            found.append(f"{where} {text!r}: dataset name {source.name!r} given more than once; "
                         "give each set its own name")
        names.append(source.name)
        for kind, folder in (("images", source.images), ("masks", source.masks)):
            if not Path(folder).is_dir():
                what = "is not a folder" if Path(folder).exists() else "not found"
                found.append(f"{where} {text!r}: {kind} folder {folder} {what} ({FORMAT})")
    return found


def make_folders(specs: list[str]) -> list[str]:
    """The images and masks folders of `specs` that Make can name in a rule (no whitespace, ':' or
    '%'); a spec that does not parse contributes none (`problems` reports it)."""
    folders = []
    for text in specs:
        try:
            source = parse_source(text)
        except ValueError:
            continue
        folders += [f for f in (source.images, source.masks)
                    if not re.search(r"[\s:%]", f) and Path(f).is_dir()]
    return folders


def main(argv: list[str]) -> str:
    """Make's view of the rule (profiles/pipeline.mk): `--check SPEC...`, `--folders SPEC...`."""
    if argv[:1] == ["--check"]:
        return "; ".join(problems(argv[1:]))
    if argv[:1] == ["--folders"]:
        return " ".join(make_folders(argv[1:]))
    raise SystemExit(f"usage: sources.py --check|--folders SPEC...; got {argv!r}")


if __name__ == "__main__":
    import sys
    print(main(sys.argv[1:]))
