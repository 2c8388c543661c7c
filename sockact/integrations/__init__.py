"""One module per server, each importing its server only when used:

====================  ==============================================================
``uvicorn``           ``run(asgi_app, listen, **uvicorn.Config options)``
``hypercorn``         ``run(asgi_app, listen, **hypercorn Config attributes)``
``aiohttp``           ``run(web_app, listen, ssl_context=...)``
``tornado``           ``run(tornado_app, listen, **HTTPServer options)``
``waitress``          ``run(wsgi_app, listen, **waitress adjustments)``
``gunicorn``          config hooks for ``sockact run -- gunicorn ...`` (see its docstring)
====================  ==============================================================

Each ``run`` takes the sockets with :func:`sockact.get_listeners` (inherited from systemd or a
predecessor, else bound), sends READY=1 once the server accepts, reloads in place on SIGHUP through
:class:`sockact.Upgrader`, and drains with the server's own graceful shutdown within
``drain_timeout``. It returns ``"upgraded"``, ``"stop"`` or ``"failed"``. Once the server accepts it
logs one start line on the ``sockact`` logger (``sockact 0.1.0 pid 812 serving http=127.0.0.1:8000
(inherited) with uvicorn 0.30.6``), and one line per reload outcome; if the application configured no
logging, ``run`` gives that logger a stderr handler first (``<N>`` priorities when stderr is the
journal; :func:`sockact._journal.configure_logging` has the rule).

The options every ``run`` takes besides the app and ``listen`` (an address in ListenStream= syntax,
or ``{name: address}`` matched against FileDescriptorName=):

* ``drain_timeout`` (30 s): time for in-flight requests once a successor took over or a stop signal
  came; a second stop signal ends it at once.
* ``ready_timeout`` (60 s): time a successor has to send READY=1, else it is killed and this process
  keeps serving.
* ``pidfile``: hand over by PID file (default ``$SOCKACT_PIDFILE``; pair with PIDFile= in the unit).
* ``environ``: where LISTEN_* and NOTIFY_SOCKET are read (default ``os.environ``).
* ``idle_grace`` (0.5 s, at most half of ``drain_timeout``): while draining, every response says
  ``Connection: close`` and its connection closes after it; a keep-alive connection is closed
  without a response only once it (uvicorn, hypercorn, aiohttp: the whole server) has been silent
  that long — a client whose next request is already on its way is answered, never cut.
"""
