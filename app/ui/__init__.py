"""The PySide6 face of DecodeLab: the workbench window, its widgets and the engine worker."""
