"""Reference data shipped with lpa (read through ``lpa.report``, not directly).

* ``numbers.csv``: published and reproduced top-1 errors, one sourced number per row
  (``dataset,config,who,top1_error,source``; notation defined in ``lpa/report/tables.py``).
* ``deviations.yaml``: the deviations ledger (list of ``{topic, paper_or_official, ours, why}``).
"""
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent
NUMBERS_CSV = REFERENCE_DIR / "numbers.csv"
DEVIATIONS_YAML = REFERENCE_DIR / "deviations.yaml"
