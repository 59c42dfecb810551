"""The card's summary of the per-image metadata: sex, age, view and modality, with what is missing."""

from __future__ import annotations

__all__ = ["metadata_table"]


def metadata_table(summary: dict, *, images: int) -> str:
    """A table of the metadata summary (card.stats' `metadata`) over `images` rows."""

    def counts(counter: dict[str, int]) -> str:
        given = [f"{value} {count}" for value, count in counter.items() if value != "missing"]
        return ", ".join(given) or "none given"

    if summary["age_median"] is None:
        ages = "none given"
    else:
        ages = f"median {summary['age_median']:g}, range {summary['age_min']}-{summary['age_max']}"
    rows = [
        ("`sex`", counts(summary["sex"]), summary["sex"].get("missing", 0)),
        ("`age` (years)", f"{ages} ({summary['age_known']} images)", summary["age_missing"]),
        ("`view`", counts(summary["view"]), summary["view"].get("missing", 0)),
        ("`modality`", counts(summary["modality"]), summary["modality"].get("missing", 0)),
    ]
    lines = [f"| column (of {images} images) | values | missing (null) |", "|---|---|---:|"]
    lines += [f"| {column} | {values} | {missing} |" for column, values, missing in rows]
    return "\n".join(lines)
