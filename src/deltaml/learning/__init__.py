"""Learning: data sets, model types, the encrypted update math, metrics, contributions.

Pure functions and small classes. Nothing here imports ``services``, the web3 code
in ``ledger`` or the SQL code in ``store``, so the same code runs in unit tests,
in the one-process demo and in the separate services.
"""
