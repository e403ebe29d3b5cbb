"""The importer registry: one YAML file per importer, keyed by CTS image name."""

from registry.images import image_name
from registry.registry import ImporterEntry, ImporterSettings, Registry, RegistryError, load_module

__all__ = ["ImporterEntry", "ImporterSettings", "Registry", "RegistryError", "image_name",
           "load_module"]
