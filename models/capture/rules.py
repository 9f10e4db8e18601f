"""Which predictions are captured: ``KTL_CAPTURE``, comma-joined rules, any of which
keeps a prediction: ``abstained`` (the decision is "not sure"), ``below:P`` (the top
probability is under P), ``sample:F`` (a random share F of all predictions)."""

from __future__ import annotations

from dataclasses import dataclass

RULE_FORMS = "abstained, below:P (0 < P <= 1) or sample:F (0 < F <= 1), comma-joined"


@dataclass(frozen=True)
class CaptureRules:
    abstained: bool = False
    below: float | None = None
    sample: float | None = None

    def keeps(self, confidence: float, abstained: bool, draw: float) -> bool:
        """Whether a prediction is kept; ``draw`` is a uniform random number in [0, 1)."""
        return (
            (self.abstained and abstained)
            or (self.below is not None and confidence < self.below)
            or (self.sample is not None and draw < self.sample)
        )

    def __str__(self) -> str:
        parts = ["abstained"] if self.abstained else []
        parts += [f"below:{self.below:g}"] if self.below is not None else []
        parts += [f"sample:{self.sample:g}"] if self.sample is not None else []
        return ",".join(parts)


def _share(rule: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{rule!r}: {text!r} is not a number; rules are {RULE_FORMS}") from None
    if not 0 < value <= 1:
        raise ValueError(f"{rule!r}: {value:g} is not in (0, 1]; rules are {RULE_FORMS}")
    return value


def parse_rules(text: str) -> CaptureRules:
    """``KTL_CAPTURE``'s value as rules; ``ValueError`` naming the bad rule."""
    found: dict[str, object] = {}
    for rule in (part.strip().lower() for part in text.split(",")):
        if not rule:
            continue
        name, _, argument = rule.partition(":")
        if name in found:
            raise ValueError(f"{name!r} is given twice; rules are {RULE_FORMS}")
        if name == "abstained" and not argument:
            found[name] = True
        elif name in ("below", "sample") and argument:
            found[name] = _share(rule, argument)
        else:
            raise ValueError(f"unknown rule {rule!r}; rules are {RULE_FORMS}")
    return CaptureRules(**found)  # type: ignore[arg-type]
