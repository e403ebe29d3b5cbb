"""An importer package as its owners ship it: importers, their YAMLs and a shared helper."""
