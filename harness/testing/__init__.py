"""Test support that ships with callwall: the pytest plugin (plugin.py,
registered as the ``callwall`` pytest11 entry point), a lab factory
(labs.py), the fake lab substrate for unit tests without root (fake.py) and
the root-namespace snapshot (rootsnapshot.py).

Nothing here is imported by the harness itself."""
