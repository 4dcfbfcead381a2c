"""Metadata of the annotation app in SQLAlchemy 2: SQLite by default, Postgres by URL.

Tables: ``images`` (by SHA-256), ``set_images`` (which images an assigned set holds, in order),
``annotators`` (a token is stored only as its SHA-256), ``clips`` (one per accepted upload),
``export_batches`` (clips handed to the clips dataset, see :mod:`curate.annotation.export`) and
``secrets`` (the key that signs image URLs, shared by every server process on the database).

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed transaction survives a power cut)
and every transaction starts with ``BEGIN IMMEDIATE`` (writers queue on the busy timeout instead of
failing to upgrade a read lock). Postgres is used as it is (``postgresql+psycopg://...``; its
default ``synchronous_commit=on`` is durable).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import uuid
from typing import Any, Iterator

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

DEFAULT_SET = "default"
TOKEN_PREFIX = "cur_"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def hash_token(token: str) -> str:
    # tokens are 256-bit random strings: a plain SHA-256 is enough (nothing to brute-force)
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def image_id_of(sha256: str) -> str:
    return "img_" + sha256[:24]


class Base(DeclarativeBase):
    pass


class Image(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[str] = mapped_column(String(16))  # png, jpeg, webp, gif
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    source_name: Mapped[str] = mapped_column(String(255))  # the file name it was imported from (display only)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SetImage(Base):
    __tablename__ = "set_images"
    set_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    set_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Clip(Base):
    __tablename__ = "clips"
    __table_args__ = (UniqueConstraint("annotator_id", "image_id", "audio_sha256", name="uq_clip_upload"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"))
    audio_sha256: Mapped[str] = mapped_column(String(64))
    audio_format: Mapped[str] = mapped_column(String(8))
    codec: Mapped[str] = mapped_column(String(32))
    duration_s: Mapped[float] = mapped_column(Float)
    size_bytes: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    export_batch: Mapped[str | None] = mapped_column(ForeignKey("export_batches.id"), index=True, default=None)


class ExportBatch(Base):
    __tablename__ = "export_batches"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # pending (rows assigned, maybe committed) | done
    rows: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str] = mapped_column(String(1000))
    version: Mapped[int | None] = mapped_column(Integer, default=None)  # the Delta version that holds it
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Secret(Base):
    __tablename__ = "secrets"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, WAL and FULL sync switched on."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(parsed.database)) or ".", exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """The app's metadata store: sessions and the queries the app, CLI and export share."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self.sessions()

    # ------------------------------------------------------------ images and sets

    def add_image(self, sha256: str, *, format: str, width: int, height: int, size_bytes: int, source_name: str,
                  set_name: str) -> tuple[Image, bool]:
        """Record an image (stored blob) and put it in ``set_name``; ``(image, new to the set)``."""
        iid = image_id_of(sha256)
        with self.session() as s, s.begin():
            img = s.get(Image, iid)
            if img is None:
                img = Image(id=iid, sha256=sha256, format=format, width=width, height=height, size_bytes=size_bytes,
                            source_name=source_name[:255])
                s.add(img)
            if s.get(SetImage, (set_name, iid)) is not None:
                return img, False
            last = s.scalar(select(func.max(SetImage.position)).where(SetImage.set_name == set_name))
            s.add(SetImage(set_name=set_name, image_id=iid, position=(last or 0) + 1))
        return img, True

    def image(self, image_id: str) -> Image | None:
        with self.session() as s:
            return s.get(Image, image_id)

    def image_by_sha(self, sha256: str) -> Image | None:
        with self.session() as s:
            return s.scalar(select(Image).where(Image.sha256 == sha256))

    def in_set(self, set_name: str, image_id: str) -> bool:
        with self.session() as s:
            return s.get(SetImage, (set_name, image_id)) is not None

    def set_sizes(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(SetImage.set_name, func.count()).group_by(SetImage.set_name)).all()
        return {name: int(n) for name, n in rows}

    # ------------------------------------------------------------ annotators

    def add_annotator(self, name: str, set_name: str = DEFAULT_SET) -> tuple[Annotator, str]:
        """A new annotator and their token (shown once: only its hash is stored)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        ann = Annotator(id="ann_" + uuid.uuid4().hex[:16], name=name, token_sha256=hash_token(token), set_name=set_name)
        try:
            with self.session() as s, s.begin():
                s.add(ann)
        except IntegrityError:
            raise ValueError(f"an annotator named {name!r} already exists") from None
        return ann, token

    def annotator_by_token(self, token: str) -> Annotator | None:
        with self.session() as s:
            return s.scalar(select(Annotator).where(Annotator.token_sha256 == hash_token(token)))

    def annotators(self) -> list[Annotator]:
        with self.session() as s:
            return list(s.scalars(select(Annotator).order_by(Annotator.name)))

    # ------------------------------------------------------------ work and progress

    def next_image(self, ann: Annotator) -> Image | None:
        """The first image of the annotator's set (import order) they have no clip for."""
        done = select(Clip.image_id).where(Clip.annotator_id == ann.id)
        q = (
            select(Image)
            .join(SetImage, SetImage.image_id == Image.id)
            .where(SetImage.set_name == ann.set_name, Image.id.not_in(done))
            .order_by(SetImage.position)
            .limit(1)
        )
        with self.session() as s:
            return s.scalar(q)

    def progress(self, ann: Annotator) -> tuple[int, int]:
        """``(images of the set with a clip by this annotator, images in the set)``."""
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(SetImage).where(SetImage.set_name == ann.set_name)) or 0
            done = s.scalar(
                select(func.count(func.distinct(Clip.image_id)))
                .join(SetImage, (SetImage.image_id == Clip.image_id) & (SetImage.set_name == ann.set_name))
                .where(Clip.annotator_id == ann.id)
            ) or 0
        return int(done), int(total)

    # ------------------------------------------------------------ clips

    def find_clip(self, annotator_id: str, image_id: str, audio_sha256: str) -> Clip | None:
        with self.session() as s:
            return s.scalar(select(Clip).where(Clip.annotator_id == annotator_id, Clip.image_id == image_id,
                                               Clip.audio_sha256 == audio_sha256))

    def add_clip(self, *, annotator_id: str, image_id: str, audio_sha256: str, audio_format: str, codec: str,
                 duration_s: float, size_bytes: int) -> tuple[Clip, bool]:
        """Record an upload whose blob is durable; ``(clip, created)``. The same bytes for the same
        image by the same annotator give back the clip recorded first (``created`` False)."""
        old = self.find_clip(annotator_id, image_id, audio_sha256)
        if old is not None:
            return old, False
        clip = Clip(id="clip_" + uuid.uuid4().hex, annotator_id=annotator_id, image_id=image_id, audio_sha256=audio_sha256,
                    audio_format=audio_format, codec=codec, duration_s=float(duration_s), size_bytes=int(size_bytes),
                    submitted_at=utcnow())
        try:
            with self.session() as s, s.begin():
                s.add(clip)
        except IntegrityError:  # the same upload raced this one and won
            old = self.find_clip(annotator_id, image_id, audio_sha256)
            if old is None:
                raise
            return old, False
        return clip, True

    def clips_of(self, annotator_id: str) -> list[Clip]:
        with self.session() as s:
            return list(s.scalars(select(Clip).where(Clip.annotator_id == annotator_id).order_by(Clip.submitted_at, Clip.id)))

    def clip_of(self, annotator_id: str, clip_id: str) -> Clip | None:
        with self.session() as s:
            return s.scalar(select(Clip).where(Clip.id == clip_id, Clip.annotator_id == annotator_id))

    def all_clips(self) -> Iterator[Clip]:
        with self.session() as s:
            yield from s.scalars(select(Clip).order_by(Clip.submitted_at, Clip.id))

    # ------------------------------------------------------------ secrets

    def secret(self, name: str = "image_urls") -> bytes:
        """A random key made once per database (signs image URLs for every server process)."""
        with self.session() as s:
            row = s.get(Secret, name)
        if row is None:
            try:
                with self.session() as s, s.begin():
                    s.add(Secret(name=name, value=secrets.token_hex(32)))
            except IntegrityError:
                pass  # another process made it first
            with self.session() as s:
                row = s.get(Secret, name)
        assert row is not None
        return bytes.fromhex(row.value)


__all__ = ["Annotator", "Base", "Clip", "DEFAULT_SET", "Database", "ExportBatch", "Image", "SetImage", "as_utc",
           "hash_token", "image_id_of", "make_engine", "utcnow"]
