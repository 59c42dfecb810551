"""`python scripts/evaluate.py ...` is `covid-seg evaluate ...`: the command's own code, nothing else."""

from covid_chestxray_seg_tools.cli import script

if __name__ == "__main__":
    script("evaluate")
