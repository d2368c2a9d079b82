"""Study scripts: each reproduces a result end to end (installed as ``thermonet.studies``).

Run one with ``thermonet study NAME`` (``ideal_gas.py`` is ``ideal-gas``) or
``python studies/NAME.py``; copy one to start your own (``docs/tutorial-study.md``).
"""
