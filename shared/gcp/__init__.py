"""The one Google Cloud layer every area uses: Cloud Run (:mod:`shared.gcp.cloudrun`),
Cloud Monitoring (:mod:`shared.gcp.monitoring`) and the HTTP health probe
(:mod:`shared.gcp.probe`). Areas build their ports on these; no area builds a client of
its own. Client libraries are imported by the submodules only, so importing this package
loads none of them.
"""
