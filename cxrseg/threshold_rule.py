"""The study's rule for a mask threshold, chosen on validation: the candidate with the best mean
validation Dice or, with a tolerance, the lowest candidate within that much of the best (a lower
threshold keeps more lung). cxrseg.evaluate chooses by it, cxrseg.predict re-derives the choice
from eval.csv by it, and the experiments choose per fold by it. Thresholds are written by
`threshold_text`, which reads back as the same number."""
from __future__ import annotations

# eval.csv stores mean Dice to 6 decimals; the rule compares them at that precision, so that the
# choice evaluate makes and the one predict re-reads from eval.csv are the same.
DICE_DECIMALS = 6


def choose_threshold(dice: dict[float, float], tolerance: float = 0.0) -> float:
    """The lowest threshold whose mean validation Dice (rounded to DICE_DECIMALS) is within
    `tolerance` of the best; tolerance 0: the best, ties to the lower threshold."""
    if not dice:
        raise ValueError("no candidate thresholds to choose from")
    if not 0 <= tolerance < 1:
        raise ValueError(f"threshold tolerance {tolerance} is not in [0, 1)")
    rounded = {t: round(float(d), DICE_DECIMALS) for t, d in dice.items()}
    floor = round(max(rounded.values()) - tolerance, DICE_DECIMALS)
    return min(t for t, d in rounded.items() if d >= floor)


def threshold_text(threshold: float) -> str:
    """A threshold as eval.csv writes it: 2 decimals (0.40) when they give it exactly back, else
    the shortest text that does (0.333), so that the threshold read back is the one used."""
    short = f"{threshold:.2f}"
    return short if float(short) == threshold else repr(float(threshold))
