"""Importers (a module with ``run_import`` plus a YAML file each) and their helper library:
:mod:`importers.delimited` (typed TSV/CSV reading) and :mod:`importers.tables` (Delta
create-if-missing and MERGE)."""
