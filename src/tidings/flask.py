"""Request signals for Flask: the WSGI middleware plus a bridge for Flask's own error handling.

Flask turns an unhandled exception into a 500 response inside ``wsgi_app`` (unless
``PROPAGATE_EXCEPTIONS`` is on), so a WSGI middleware never sees it. :func:`init_app` wraps
``app.wsgi_app`` in :class:`tidings.wsgi.SignalsMiddleware` and forwards Flask's
``got_request_exception`` to :data:`tidings.http.got_request_exception`, so a Flask app sends
the same three signals as any other app::

    app = Flask(__name__)
    tidings.flask.init_app(app)

Flask's ``got_request_exception`` fires only for exceptions that reach ``handle_exception``;
``abort(404)`` and other HTTP exceptions send nothing, as in Django. When the exception is also
propagated (debug or testing mode), it is reported once, not twice.
"""

from __future__ import annotations

from typing import Any

try:
    import flask
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'tidings.flask needs Flask; install it with: pip install "tidings[flask]"'
    ) from exc

from tidings._errors import AppKindError
from tidings._middleware import is_asgi_app
from tidings.wsgi import SignalsMiddleware, report_exception

__all__ = ["forward_exception", "init_app"]


def forward_exception(sender: flask.Flask, exception: Exception, **extra: Any) -> None:
    """Forward one of Flask's ``got_request_exception`` to tidings' signal.

    Connected by :func:`init_app`; connect it yourself
    (``flask.got_request_exception.connect(forward_exception, app)``) to bridge errors without
    the middleware.

    Args:
        sender: The Flask application that caught the exception.
        exception: The exception the view (or an error handler) raised.
        **extra: Whatever else Flask passes; ignored.
    """
    report_exception(exception, flask.request.environ)


def init_app(app: flask.Flask, *, sender: object = None) -> flask.Flask:
    """Send tidings' request signals for every request of a Flask application.

    Idempotent: calling it twice neither wraps the app twice nor forwards errors twice.

    Args:
        app: The Flask application.
        sender: The sender of ``request_started``/``request_finished``; defaults to
            :class:`tidings.wsgi.SignalsMiddleware`.

    Returns:
        The same application, for chaining.

    Raises:
        AppKindError: ``app`` is not a Flask application (the message says which middleware
            serves it instead).
    """
    if not isinstance(app, flask.Flask):
        if is_asgi_app(app):
            advice = (
                "it is an ASGI application: use tidings.asgi.SignalsMiddleware (in Starlette "
                "or FastAPI: app.add_middleware(tidings.asgi.SignalsMiddleware))"
            )
        else:
            advice = "for any other WSGI application use tidings.wsgi.SignalsMiddleware(app)"
        raise AppKindError(f"tidings.flask.init_app() expects a flask.Flask, not {app!r}; {advice}")
    # Blinker keeps one connection per (receiver, sender) pair, so reconnecting is harmless;
    # weak=False because the module function must outlive any particular caller's reference.
    flask.got_request_exception.connect(forward_exception, app, weak=False)
    if not isinstance(app.wsgi_app, SignalsMiddleware):
        app.wsgi_app = SignalsMiddleware(app.wsgi_app, sender=sender)  # type: ignore[method-assign]
    return app
