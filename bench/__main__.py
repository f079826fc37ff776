"""`python -m bench` is the same as the `epbench` console script."""

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
