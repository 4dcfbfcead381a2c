"""The JSON API (also what the page runs on). Every endpoint needs ``Authorization: Bearer TOKEN``.

| method, path | answer |
|---|---|
| ``GET /api/next`` | 200 the caller's next image (id, signed URL, questions, progress); 200 ``{"done": true}`` when all are done |
| ``POST /api/clips`` | multipart ``image_id`` + ``file``: 201 new clip (id, SHA-256, ...) once blob and row are durable; 200 the same clip for the same bytes again |
| ``GET /api/clips`` | the caller's clips |
| ``GET /api/clips/{id}`` | one of the caller's clips (404 for anyone else's) |
| ``GET /api/progress`` | done / total of the caller's set |
| ``GET /images/{sha256}`` | an image, with a bearer token (images of the caller's set) or a signed URL |
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations, which
# name classes imported inside make_router().

import dataclasses
import os
import time
from typing import Any

from .audio import AudioError, probe
from .auth import RateLimiter, authenticate, check_signature, sign
from .db import Database, as_utc
from .images import MEDIA_TYPES
from .settings import Settings
from .store import BlobStore, is_sha256
from .upload import UploadError, receive

#: PixMo's questions, shown beside the image
QUESTIONS = [
    "What is the image at first glance?",
    "What objects are there, and how many of each?",
    "Is there any text? Read it out.",
    "Where are things placed, relative to each other?",
    "What subtle details would someone miss at first?",
    "What is in the background?",
    "What is the style, and what are the colours?",
]


@dataclasses.dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    limiter: RateLimiter
    secret: bytes


def clip_json(svc: Services, clip: Any) -> dict[str, Any]:
    return {
        "id": clip.id,
        "image_id": clip.image_id,
        "sha256": clip.audio_sha256,
        "format": clip.audio_format,
        "codec": clip.codec,
        "duration_s": round(clip.duration_s, 3),
        "size_bytes": clip.size_bytes,
        "submitted_at": as_utc(clip.submitted_at).isoformat(),
        "audio_uri": svc.store.uri(clip.audio_sha256),
    }


#: the media type a clip's audio is served with, by its format
AUDIO_TYPES = {"webm": "audio/webm", "ogg": "audio/ogg", "wav": "audio/wav", "mp3": "audio/mpeg", "m4a": "audio/mp4",
               "flac": "audio/flac", "opus": "audio/ogg"}


def image_url(svc: Services, sha256: str) -> str:
    expires = int(time.time()) + svc.settings.image_url_ttl_s
    return f"/images/{sha256}?expires={expires}&sig={sign(svc.secret, sha256, expires)}"


def _accept(svc: Services, ann: Any, image_id: str | None, path: str | None, size: int, sha256: str) -> tuple[int, dict[str, Any]]:
    """Check, store durably, record; ``(status, body)``."""
    if not image_id:
        return 422, {"detail": "missing field image_id (the id /api/next gave)"}
    if path is None:
        return 422, {"detail": "missing file part: send the recording as the multipart field `file`"}
    if not svc.db.in_set(ann.set_name, image_id):
        return 422, {"detail": f"image {image_id!r} is not in your assigned set"}
    old = svc.db.find_clip(ann.id, image_id, sha256)
    if old is not None and svc.store.exists(sha256):
        return 200, clip_json(svc, old)
    if size == 0:
        return 422, {"detail": "the file is empty (0 bytes)"}
    try:
        info = probe(path, max_seconds=svc.settings.max_seconds)
    except AudioError as exc:
        return 422, {"detail": str(exc)}
    if info.duration_s < svc.settings.min_seconds:
        return 422, {"detail": f"the clip is too short: {info.duration_s:.2f} s (at least {svc.settings.min_seconds:g} s)"}
    svc.store.put_file(path, sha256)  # durable before the row that names it is committed
    clip, created = svc.db.add_clip(annotator_id=ann.id, image_id=image_id, audio_sha256=sha256, audio_format=info.format,
                                    codec=info.codec, duration_s=info.duration_s, size_bytes=size)
    return (201 if created else 200), clip_json(svc, clip)


def _reading_routes(router: Any, annotator: Any, services: Any) -> None:
    """The routes that read: progress, the next image, an image of the set, one's own clips and
    their audio."""
    from fastapi import Depends, HTTPException, Response

    @router.get("/api/progress")
    def get_progress(ann: Any = Depends(annotator), svc: Services = Depends(services)) -> dict[str, Any]:
        done, total = svc.db.progress(ann)
        return {"annotator": ann.name, "set": ann.set_name, "done": done, "total": total}


    @router.get("/api/next")
    def get_next(ann: Any = Depends(annotator), svc: Services = Depends(services)) -> dict[str, Any]:
        done, total = svc.db.progress(ann)
        img = svc.db.next_image(ann)
        progress = {"done": done, "total": total}
        if img is None:
            msg = "all images of your set are done" if total else f"your set {ann.set_name!r} has no images yet"
            return {"done": True, "detail": msg, "progress": progress}
        return {
            "done": False,
            "id": img.id,
            "sha256": img.sha256,
            "url": image_url(svc, img.sha256),
            "width": img.width,
            "height": img.height,
            "questions": QUESTIONS,
            "progress": progress,
        }


    @router.get("/api/clips")
    def list_clips(ann: Any = Depends(annotator), svc: Services = Depends(services)) -> dict[str, Any]:
        return {"clips": [clip_json(svc, c) for c in svc.db.clips_of(ann.id)]}


    @router.get("/api/clips/{clip_id}")
    def get_clip(clip_id: str, ann: Any = Depends(annotator), svc: Services = Depends(services)) -> dict[str, Any]:
        clip = svc.db.clip_of(ann.id, clip_id)
        if clip is None:
            raise HTTPException(404, f"you have no clip {clip_id!r}")
        return clip_json(svc, clip)


    @router.get("/api/clips/{clip_id}/audio", responses={200: {"content": {"audio/webm": {}, "audio/wav": {}}}})
    def get_clip_audio(clip_id: str, ann: Any = Depends(annotator), svc: Services = Depends(services)) -> Response:
        """The audio of one of your clips, as it was uploaded (the page's "My clips" plays it)."""
        clip = svc.db.clip_of(ann.id, clip_id)
        if clip is None or not svc.store.exists(clip.audio_sha256):
            raise HTTPException(404, f"you have no clip {clip_id!r}")
        media = AUDIO_TYPES.get(clip.audio_format, "application/octet-stream")
        return Response(svc.store.read_bytes(clip.audio_sha256), media_type=media,
                        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})


    @router.get("/api/images/{image_id}")
    def get_image_info(image_id: str, ann: Any = Depends(annotator), svc: Services = Depends(services)) -> dict[str, Any]:
        """One image of your set (for recording it again): its id and a signed URL."""
        img = svc.db.image(image_id)
        if img is None or not svc.db.in_set(ann.set_name, img.id):
            raise HTTPException(404, "no such image in your set")
        return {"id": img.id, "sha256": img.sha256, "url": image_url(svc, img.sha256), "width": img.width, "height": img.height}


def make_router() -> Any:
    """The API's routes (FastAPI is the ``annotation`` extra: imported here, not with the module)."""
    from fastapi import APIRouter, Depends, HTTPException, Request, Response
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

    def services(request: Request) -> Services:
        return request.app.state.services  # type: ignore[no-any-return]

    def annotator(request: Request, svc: Services = Depends(services)) -> Any:
        return authenticate(svc.db, request)

    router = APIRouter()



    _reading_routes(router, annotator, services)

    @router.post("/api/clips", status_code=201, responses={200: {"description": "the same bytes for the same image again: the clip recorded first"}})
    async def post_clip(request: Request, ann: Any = Depends(annotator), svc: Services = Depends(services)) -> Response:
        wait = svc.limiter.hit(ann.id)
        if wait is not None:
            return JSONResponse({"detail": f"too many uploads: at most {svc.settings.rate_limit} per token; retry in {wait} s"},
                                status_code=429, headers={"Retry-After": str(wait)})
        length = request.headers.get("content-length")
        try:
            got = await receive(request.headers.get("content-type", ""), request.stream(), svc.settings.spool_dir,
                                svc.settings.max_upload_bytes, int(length) if length and length.isdigit() else None)
        except UploadError as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        try:
            status, body = await run_in_threadpool(_accept, svc, ann, got.fields.get("image_id"), got.path, got.size, got.sha256)
        finally:
            got.discard()
        return JSONResponse(body, status_code=status)


    @router.get("/images/{sha256}", responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
    def get_image(sha256: str, request: Request, expires: str | None = None, sig: str | None = None,
                  svc: Services = Depends(services)) -> Response:
        if not is_sha256(sha256):
            raise HTTPException(404, "no such image")
        if not check_signature(svc.secret, sha256, expires, sig):
            ann = authenticate(svc.db, request)  # 401 unless a bearer token of an annotator with this image
            img = svc.db.image_by_sha(sha256)
            if img is None or not svc.db.in_set(ann.set_name, img.id):
                raise HTTPException(404, "no such image in your set")
        else:
            img = svc.db.image_by_sha(sha256)
        if img is None or not svc.store.exists(sha256):
            raise HTTPException(404, "no such image")
        media = MEDIA_TYPES.get(img.format, "application/octet-stream")
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
        local = svc.store.local_path(sha256)
        if local is not None and os.path.isfile(local):
            return FileResponse(local, media_type=media, headers=headers)
        return StreamingResponse(svc.store.open(sha256), media_type=media, headers=headers)

    return router


__all__ = ["QUESTIONS", "Services", "make_router"]
