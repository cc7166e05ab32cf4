"""The ``pack391_*`` functions, one package per spec area (see ../shared/DESIGN.md)."""
