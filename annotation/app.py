"""The annotators' web app: :func:`create_app` builds it from :class:`~.settings.Settings`.

``GET /`` is the annotation page (server-rendered, a little plain JavaScript in
``static/annotate.js``; it holds no data: everything it shows comes from the JSON API with the
token the annotator signs in with). The API is in :mod:`curate.annotation.api`; FastAPI serves its
OpenAPI description at ``/openapi.json``. There are no admin endpoints: images and
annotators are added with ``curate annotate`` on the server's machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from importlib import resources
from typing import Any, AsyncIterator

from .api import QUESTIONS, Services, make_router
from .auth import RateLimiter
from .db import Database
from .settings import Settings, parse_rate
from .store import BlobStore

log = logging.getLogger("curate.annotation")


def _page(settings: Settings) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("curate.annotation", "templates"), autoescape=True)
    return env.get_template("annotate.html").render(
        questions=QUESTIONS, max_upload_mb=settings.max_upload_mb, min_seconds=settings.min_seconds,
        max_seconds=settings.max_seconds, target_min=settings.target_seconds[0], target_max=settings.target_seconds[1],
        min_recording=settings.min_recording_seconds,
    )


def _export_loop(svc: Services, stop: threading.Event) -> None:
    from .export import export_clips

    while not stop.wait(svc.settings.export_every):
        try:
            result = export_clips(svc.db, svc.store, svc.settings.dataset, svc.settings.storage_options)
            if result.rows:
                log.info("exported %d clip(s) to %s (version %s)", result.rows, svc.settings.dataset, result.version)
        except Exception:  # the next round tries again; nothing is half-exported (see export.py)
            log.exception("export to %s failed", svc.settings.dataset)


#: received uploads older than this are leftovers of a killed server (none takes this long)
SPOOL_MAX_AGE_S = 3600


def _clean_spool(folder: str) -> int:
    """Remove what killed servers left half-received (never acknowledged) in the spool folder: at
    once when the process that received it (on this host) is gone, else after ``SPOOL_MAX_AGE_S``
    (a file of another host, or of a server from before spool files named their process).
    Returns how many files went."""
    import socket
    import time

    host = socket.gethostname()
    removed = 0
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if not name.startswith("upload-"):
            continue
        owner = name[len("upload-"):].rsplit("-", 2)
        dead = len(owner) == 3 and owner[0] == host and owner[1].isdigit() and not _alive(int(owner[1]))
        try:
            if dead or time.time() - os.path.getmtime(path) > SPOOL_MAX_AGE_S:
                os.unlink(path)
                removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_app(settings: Settings | None = None) -> Any:
    """The app on ``settings`` (the database's tables are created if missing); a FastAPI app
    (FastAPI is the ``annotation`` extra, imported here)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    settings = settings or Settings()
    settings.check()
    db = Database(settings.db_url)
    db.create_all()
    store = BlobStore(settings.store_url, settings.storage_options)
    os.makedirs(settings.spool_dir, exist_ok=True)
    _clean_spool(settings.spool_dir)
    limit, period = parse_rate(settings.rate_limit)
    svc = Services(settings=settings, db=db, store=store, limiter=RateLimiter(limit, period), secret=db.secret())

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        stop = threading.Event()
        worker = None
        if settings.export_every > 0:
            worker = threading.Thread(target=_export_loop, args=(svc, stop), name="curate-annotation-export", daemon=True)
            worker.start()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=60)
            db.dispose()

    app = FastAPI(
        title="curate annotate",
        summary="Spoken image annotations: annotators record what they see, clips are stored durably.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # the interactive docs load their scripts from a CDN: offline they show nothing
        redoc_url=None,
    )
    app.state.services = svc
    app.state.settings = settings
    app.include_router(make_router())
    static = resources.files("curate.annotation") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    page = _page(settings)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> Any:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Any:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server's log has the details"},
                            status_code=500)

    return app


def _version() -> str:
    try:
        from curate._version import __version__

        return str(__version__)
    except Exception:
        return "0"


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


__all__ = ["create_app", "serve"]


