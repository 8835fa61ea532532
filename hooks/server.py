"""Serving the hooks app with gunicorn (its application API), logging through poolgate's JSON log lines."""

from __future__ import annotations

import logging

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger


class JsonLogger(Logger):
    """gunicorn's logger, sending its messages to the root logger (poolgate.logs JSON lines). Requests are logged
    by the app itself, with their duration, so gunicorn's access log stays off."""

    def setup(self, cfg) -> None:
        self.cfg = cfg
        self._access_log_enabled = False
        self.loglevel = logging.getLogger().level
        self.error_log.handlers.clear()
        self.error_log.propagate = True
        self.error_log.setLevel(self.loglevel)
        self.access_log.handlers.clear()


class HooksServer(BaseApplication):
    """A gunicorn server for one already-built Flask app (forked into `workers` sync worker processes)."""

    def __init__(self, app: Flask, bind: str, workers: int, timeout: int):
        self.application = app
        self.options = {
            "bind": bind,
            "workers": workers,
            "worker_class": "sync",
            "timeout": timeout,
            "graceful_timeout": 10,
            "logger_class": JsonLogger,
            "accesslog": None,
            "proc_name": "poolgate-hooks",
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application
