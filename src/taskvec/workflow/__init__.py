"""The study's workflow from Python: its contract with the Snakefile (:mod:`.contract`: settings
checks, step arguments, every output) and the driver that runs it (:mod:`.runner`)."""
