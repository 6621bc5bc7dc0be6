"""Command lines for tests: a base argument list with some flags replaced, and the refusals every
CLI shares (a flag out of range, a foreign output folder).

The toolkit's CLIs refuse a flag given twice, so a test that changes one setting replaces the
flag in the base list instead of appending a second copy.
"""
from pathlib import Path

import pytest


def with_flags(base: list[str], *extra: str) -> list[str]:
    """`base` with every flag in `extra` (and the values that follow it) in place of the same flag
    in `base`; flags not in `base` are appended. Flags are words starting with '--'."""
    def groups(argv):
        out = []
        for word in argv:
            if word.startswith("--") or not out:
                out.append([word])
            else:
                out[-1].append(word)
        return out

    replaced = {g[0] for g in groups(extra)}
    kept = [g for g in groups(base) if g[0] not in replaced]
    return [word for group in [*kept, *groups(extra)] for word in group]


def assert_refused_at_parse(main, argv: list[str], flag: str, capsys) -> None:
    """`main(argv)` stops with argparse's exit status 2 and an error naming `flag`."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def assert_refuses_foreign_folder(run_into, folder: Path) -> None:
    """`run_into(folder)` runs a CLI with its outputs going to `folder`, a new folder holding one
    file of the user's: the CLI stops with a one-line error naming that file and leaves it
    alone."""
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's notes\n")
    with pytest.raises(SystemExit) as stop:
        run_into(folder)
    message = str(stop.value.code)
    assert message.startswith("error: ") and "notes.txt" in message, message
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
