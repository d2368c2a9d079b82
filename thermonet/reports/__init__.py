"""Reports (seventh layer): what people look at.

* :mod:`.report` -- ``thermonet report``: a Markdown page with figures and the check table;
* :mod:`.tables` -- the check table;
* :mod:`.free_energy` -- the free-energy temperature as text and figure.
"""
