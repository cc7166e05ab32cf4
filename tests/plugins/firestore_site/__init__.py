"""Put on PYTHONPATH by the suite (never by production): see sitecustomize.py."""
