"""The runner: command line, launch detection, sweeps, timing, provenance, result files.

Only this package reads environment variables, starts processes, prints, or touches files.
It hands the launch facts it detects to a backend in `collectives.backends`, which creates
the communicator.
"""
