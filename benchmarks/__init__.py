"""The benchmark's tasks and baselines (development code, not in the installed package).

`covid-seg benchmark` (from a clone) runs each task of `benchmarks.tasks` in its own
interpreter and compares ours against `benchmarks.baselines`, measured in the same run.
"""
