"""Every error the server answers is JSON `{"error": {"code", "message"}}` with a fitting status."""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from webapp.engine import EngineError

log = logging.getLogger(__name__)

# How an engine failure reads over HTTP.
ENGINE_STATUS = {"bad_input": 400, "not_found": 404, "last_admin": 409, "timeout": 504}


class ApiError(Exception):
    """Raised by a route to answer with this status, code and user-facing message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(EngineError)
    def _engine_error(exc: EngineError):
        return error_response(ENGINE_STATUS.get(exc.code, 503), exc.code, exc.message)

    @app.errorhandler(sqlite3.OperationalError)
    def _storage_error(exc: sqlite3.OperationalError):
        # Disk full, read-only, or locked for too long: the data is intact, try later.
        log.error("database unavailable: %s", exc)
        return error_response(503, "storage_unavailable",
                              "The server cannot save anything right now; try again later.")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal", "Something went wrong on the server.")
