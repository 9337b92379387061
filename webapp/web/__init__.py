"""The web layer: Flask app factory, auth, REST routes, Socket.IO events, gunicorn launcher."""

from webapp.web.app import close_app, create_app

__all__ = ["close_app", "create_app"]
