"""The one test harness: the real processes every service-backed suite starts and stops.

- :mod:`~tests.harness.processes`: ``sealscribe serve`` / ``worker`` / ``bots`` (or any
  command) as :class:`~tests.harness.processes.Service` processes with a readiness probe (a
  worker is ready when it answers a Celery control request) and one stop helper; the typed
  ``wait_until``.
- :mod:`~tests.harness.redis`: a private ``redis-server``, optionally append-only, restartable.
- :mod:`~tests.harness.netns` and :mod:`~tests.harness.janus`: a network namespace and a real
  Janus in it; :mod:`~tests.harness.bao`: a real OpenBao dev server.
- :mod:`~tests.harness.api`: the API served inside a test's own event loop.
- :mod:`~tests.harness.stack`: whole deployments, on loopback (``LocalStack``) and in a
  namespace with Janus (``meeting_stack``).
"""
