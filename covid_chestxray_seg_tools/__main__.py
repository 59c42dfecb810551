"""`python -m covid_chestxray_seg_tools` is `covid-seg`."""

from covid_chestxray_seg_tools.cli import main

raise SystemExit(main())
