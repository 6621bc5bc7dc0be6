"""Command lines for tests: a base argument list with some flags replaced.

The toolkit's CLIs refuse a flag given twice, so a test that changes one setting replaces the
flag in the base list instead of appending a second copy.
"""


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
