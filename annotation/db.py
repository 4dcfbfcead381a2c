"""Metadata of the annotation app in SQLAlchemy 2: SQLite by default, Postgres by URL.

Tables: ``images`` (by SHA-256), ``set_images`` (which images an assigned set holds, in order),
``annotators`` (a token is stored only as its SHA-256), ``clips`` (one per accepted upload),
``export_batches`` (clips handed to the clips dataset, see :mod:`curate.annotation.export`) and
``secrets`` (the key that signs image URLs, shared by every server process on the database).

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed transaction survives a power cut)
and every transaction starts with ``BEGIN IMMEDIATE`` (writers queue on the busy timeout instead of
failing to upgrade a read lock). Postgres is used as it is (``postgresql+psycopg://...``; its
default ``synchronous_commit=on`` is durable).

SQLAlchemy is the ``annotation`` extra: it is imported when the tables are first needed
(:func:`models`), so that this module imports without it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import secrets
import types
import uuid
from typing import Any, Iterator

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


@functools.cache
def models() -> Any:
    """The tables as ORM classes: ``Base``, ``Image``, ``SetImage``, ``Annotator``, ``Clip``,
    ``ExportBatch``, ``Secret`` (made once, on first use)."""
    from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
    from sqlalchemy.orm import DeclarativeBase, mapped_column

    class Base(DeclarativeBase):
        pass

    class Image(Base):
        __tablename__ = "images"
        id = mapped_column(String(40), primary_key=True)
        sha256 = mapped_column(String(64), unique=True, nullable=False)
        format = mapped_column(String(16), nullable=False)  # png, jpeg, webp, gif
        width = mapped_column(Integer, nullable=False)
        height = mapped_column(Integer, nullable=False)
        size_bytes = mapped_column(Integer, nullable=False)
        source_name = mapped_column(String(255), nullable=False)  # the file it was imported from (display only)
        created_at = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    class SetImage(Base):
        __tablename__ = "set_images"
        set_name = mapped_column(String(100), primary_key=True)
        image_id = mapped_column(ForeignKey("images.id"), primary_key=True)
        position = mapped_column(Integer, nullable=False)

    class Annotator(Base):
        __tablename__ = "annotators"
        id = mapped_column(String(40), primary_key=True)
        name = mapped_column(String(100), unique=True, nullable=False)
        token_sha256 = mapped_column(String(64), unique=True, nullable=False)
        set_name = mapped_column(String(100), nullable=False)
        created_at = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    class ExportBatch(Base):
        __tablename__ = "export_batches"
        id = mapped_column(String(40), primary_key=True)
        state = mapped_column(String(16), nullable=False)  # pending (rows assigned, maybe committed) | done
        rows = mapped_column(Integer, nullable=False)
        dataset = mapped_column(String(1000), nullable=False)
        version = mapped_column(Integer, nullable=True)  # the Delta version that holds it
        created_at = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    class Clip(Base):
        __tablename__ = "clips"
        __table_args__ = (UniqueConstraint("annotator_id", "image_id", "audio_sha256", name="uq_clip_upload"),)
        id = mapped_column(String(40), primary_key=True)
        annotator_id = mapped_column(ForeignKey("annotators.id"), index=True, nullable=False)
        image_id = mapped_column(ForeignKey("images.id"), nullable=False)
        audio_sha256 = mapped_column(String(64), nullable=False)
        audio_format = mapped_column(String(8), nullable=False)
        codec = mapped_column(String(32), nullable=False)
        duration_s = mapped_column(Float, nullable=False)
        size_bytes = mapped_column(Integer, nullable=False)
        submitted_at = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
        export_batch = mapped_column(ForeignKey("export_batches.id"), index=True, nullable=True)

    class Secret(Base):
        __tablename__ = "secrets"
        name = mapped_column(String(40), primary_key=True)
        value = mapped_column(String(128), nullable=False)

    return types.SimpleNamespace(Base=Base, Image=Image, SetImage=SetImage, Annotator=Annotator, Clip=Clip,
                                 ExportBatch=ExportBatch, Secret=Secret)


def make_engine(url: str) -> Any:
    """An engine for ``url``; a SQLite file's folder is created, WAL and FULL sync switched on."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

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
    """The app's metadata store: sessions and the queries the app, CLI and export share. Rows are
    the classes of :func:`models` (also at ``Database.m``)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.orm import sessionmaker

        self.url = url
        self.m = models()
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        self.m.Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def session(self) -> Any:
        return self.sessions()

    # ------------------------------------------------------------ images and sets

    def add_image(self, sha256: str, *, format: str, width: int, height: int, size_bytes: int, source_name: str,
                  set_name: str) -> tuple[Any, bool]:
        """Record an image (stored blob) and put it in ``set_name``; ``(image, new to the set)``."""
        from sqlalchemy import func, select

        m, iid = self.m, image_id_of(sha256)
        with self.session() as s, s.begin():
            img = s.get(m.Image, iid)
            if img is None:
                img = m.Image(id=iid, sha256=sha256, format=format, width=width, height=height, size_bytes=size_bytes,
                              source_name=source_name[:255])
                s.add(img)
            if s.get(m.SetImage, (set_name, iid)) is not None:
                return img, False
            last = s.scalar(select(func.max(m.SetImage.position)).where(m.SetImage.set_name == set_name))
            s.add(m.SetImage(set_name=set_name, image_id=iid, position=(last or 0) + 1))
        return img, True

    def image(self, image_id: str) -> Any | None:
        with self.session() as s:
            return s.get(self.m.Image, image_id)

    def image_by_sha(self, sha256: str) -> Any | None:
        from sqlalchemy import select

        with self.session() as s:
            return s.scalar(select(self.m.Image).where(self.m.Image.sha256 == sha256))

    def in_set(self, set_name: str, image_id: str) -> bool:
        with self.session() as s:
            return s.get(self.m.SetImage, (set_name, image_id)) is not None

    def set_sizes(self) -> dict[str, int]:
        from sqlalchemy import func, select

        si = self.m.SetImage
        with self.session() as s:
            rows = s.execute(select(si.set_name, func.count()).group_by(si.set_name)).all()
        return {name: int(n) for name, n in rows}

    # ------------------------------------------------------------ annotators

    def add_annotator(self, name: str, set_name: str = DEFAULT_SET) -> tuple[Any, str]:
        """A new annotator and their token (shown once: only its hash is stored)."""
        from sqlalchemy.exc import IntegrityError

        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        ann = self.m.Annotator(id="ann_" + uuid.uuid4().hex[:16], name=name, token_sha256=hash_token(token), set_name=set_name)
        try:
            with self.session() as s, s.begin():
                s.add(ann)
        except IntegrityError:
            raise ValueError(f"an annotator named {name!r} already exists") from None
        return ann, token

    def annotator_by_token(self, token: str) -> Any | None:
        from sqlalchemy import select

        a = self.m.Annotator
        with self.session() as s:
            return s.scalar(select(a).where(a.token_sha256 == hash_token(token)))

    def annotators(self) -> list[Any]:
        from sqlalchemy import select

        with self.session() as s:
            return list(s.scalars(select(self.m.Annotator).order_by(self.m.Annotator.name)))

    # ------------------------------------------------------------ work and progress

    def next_image(self, ann: Any) -> Any | None:
        """The first image of the annotator's set (import order) they have no clip for."""
        from sqlalchemy import select

        m = self.m
        done = select(m.Clip.image_id).where(m.Clip.annotator_id == ann.id)
        q = (
            select(m.Image)
            .join(m.SetImage, m.SetImage.image_id == m.Image.id)
            .where(m.SetImage.set_name == ann.set_name, m.Image.id.not_in(done))
            .order_by(m.SetImage.position)
            .limit(1)
        )
        with self.session() as s:
            return s.scalar(q)

    def progress(self, ann: Any) -> tuple[int, int]:
        """``(images of the set with a clip by this annotator, images in the set)``."""
        from sqlalchemy import func, select

        m = self.m
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(m.SetImage).where(m.SetImage.set_name == ann.set_name)) or 0
            done = s.scalar(
                select(func.count(func.distinct(m.Clip.image_id)))
                .join(m.SetImage, (m.SetImage.image_id == m.Clip.image_id) & (m.SetImage.set_name == ann.set_name))
                .where(m.Clip.annotator_id == ann.id)
            ) or 0
        return int(done), int(total)

    # ------------------------------------------------------------ clips

    def find_clip(self, annotator_id: str, image_id: str, audio_sha256: str) -> Any | None:
        from sqlalchemy import select

        c = self.m.Clip
        with self.session() as s:
            return s.scalar(select(c).where(c.annotator_id == annotator_id, c.image_id == image_id, c.audio_sha256 == audio_sha256))

    def add_clip(self, *, annotator_id: str, image_id: str, audio_sha256: str, audio_format: str, codec: str,
                 duration_s: float, size_bytes: int) -> tuple[Any, bool]:
        """Record an upload whose blob is durable; ``(clip, created)``. The same bytes for the same
        image by the same annotator give back the clip recorded first (``created`` False)."""
        from sqlalchemy.exc import IntegrityError

        old = self.find_clip(annotator_id, image_id, audio_sha256)
        if old is not None:
            return old, False
        clip = self.m.Clip(id="clip_" + uuid.uuid4().hex, annotator_id=annotator_id, image_id=image_id,
                           audio_sha256=audio_sha256, audio_format=audio_format, codec=codec, duration_s=float(duration_s),
                           size_bytes=int(size_bytes), submitted_at=utcnow())
        try:
            with self.session() as s, s.begin():
                s.add(clip)
        except IntegrityError:  # the same upload raced this one and won
            old = self.find_clip(annotator_id, image_id, audio_sha256)
            if old is None:
                raise
            return old, False
        return clip, True

    def clips_of(self, annotator_id: str) -> list[Any]:
        from sqlalchemy import select

        c = self.m.Clip
        with self.session() as s:
            return list(s.scalars(select(c).where(c.annotator_id == annotator_id).order_by(c.submitted_at, c.id)))

    def clip_of(self, annotator_id: str, clip_id: str) -> Any | None:
        from sqlalchemy import select

        c = self.m.Clip
        with self.session() as s:
            return s.scalar(select(c).where(c.id == clip_id, c.annotator_id == annotator_id))

    def all_clips(self) -> Iterator[Any]:
        from sqlalchemy import select

        c = self.m.Clip
        with self.session() as s:
            yield from s.scalars(select(c).order_by(c.submitted_at, c.id))

    # ------------------------------------------------------------ secrets

    def secret(self, name: str = "image_urls") -> bytes:
        """A random key made once per database (signs image URLs for every server process)."""
        from sqlalchemy.exc import IntegrityError

        sec = self.m.Secret
        with self.session() as s:
            row = s.get(sec, name)
        if row is None:
            try:
                with self.session() as s, s.begin():
                    s.add(sec(name=name, value=secrets.token_hex(32)))
            except IntegrityError:
                pass  # another process made it first
            with self.session() as s:
                row = s.get(sec, name)
        assert row is not None
        return bytes.fromhex(row.value)


__all__ = ["DEFAULT_SET", "Database", "as_utc", "hash_token", "image_id_of", "make_engine", "models", "utcnow"]
