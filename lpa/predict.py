"""`python -m lpa.predict`: the short name of lpa.experiments.predict's command line."""
from lpa.experiments.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
