# SPDX-License-Identifier: EUPL-1.2
"""Test peers for the end-to-end suite.

- ``sink.py``: a scriptable SMTP sink, run as a subprocess.
- ``dns.py``: a dnsmasq wrapper serving fixed records for ``.test`` names.
- ``fixtures.py``: the pytest fixtures that start and stop them
  (load with ``pytest_plugins = ["peers.fixtures"]``).
"""
