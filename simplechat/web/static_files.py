"""Static files under content-hashed URLs, compressed, cached for a year: WhiteNoise serves them.

At start-up every file of the static folder gets a copy named after its content
(``css/app.css`` -> ``css/app.3f2a9c1b7d4e.css``) with Brotli and gzip copies beside it, in a
build folder (``STATIC_BUILD_DIR``, default ``<instance>/static-build``). Copies already there
are kept, older ones too (a page rendered before a deploy still finds its files), so only new or
changed files cost anything. ``url_for('static', filename=...)`` gives the hashed URL;
WhiteNoise answers it ahead of Flask with the smallest encoding the client accepts,
``Vary: Accept-Encoding`` and ``Cache-Control: max-age=31536000, public, immutable``. The plain
names still work through Flask's own static route, revalidated on every use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from wsgiref.headers import Headers

from flask import Flask
from whitenoise import WhiteNoise
from whitenoise.compress import Compressor

log = logging.getLogger(__name__)

HASH_LENGTH = 12
ONE_YEAR = 365 * 24 * 60 * 60


class HashedStaticFiles(WhiteNoise):
    """WhiteNoise over a folder of content-hashed files only, so each one is immutable."""

    FOREVER = ONE_YEAR  # WhiteNoise's own is ten years; a year is what HTTP caches expect

    def immutable_file_test(self, path: str, url: str) -> bool:
        return True


def content_hash(path: Path) -> str:
    """The first characters of the SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()[:HASH_LENGTH]


def hashed_name(relative: str, digest: str) -> str:
    """``css/app.css`` -> ``css/app.<digest>.css`` (``LICENSE`` -> ``LICENSE.<digest>``)."""
    head, _, name = relative.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    hashed = f"{stem}.{digest}.{ext}" if dot and stem else f"{name}.{digest}"
    return f"{head}/{hashed}" if head else hashed


def _source_files(source: Path) -> list[str]:
    return sorted(p.relative_to(source).as_posix() for p in source.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def _publish(source_file: Path, target: Path, staging_root: Path,
             compressor: Compressor) -> None:
    """Copy, compress and move into place; the file itself last, so a reader who sees it also
    sees its compressed copies. Racing processes write the same bytes, so either one wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging_root) as staging:
        staged = Path(staging) / target.name
        shutil.copy2(source_file, staged)
        variants = compressor.compress(str(staged)) if compressor.should_compress(
            staged.name) else []
        for variant in variants:
            os.replace(variant, str(target) + variant[len(str(staged)):])
        os.replace(staged, target)


def build(source: Path, destination: Path) -> dict[str, str]:
    """Hashed, compressed copies of every file under ``source`` in ``destination/files`` (made
    in ``destination/staging``, outside what WhiteNoise reads); the manifest: plain relative
    name -> hashed relative name."""
    compressor = Compressor(quiet=True)
    manifest = {}
    for relative in _source_files(source):
        hashed = hashed_name(relative, content_hash(source / relative))
        target = destination / "files" / hashed
        if not target.exists():
            _publish(source / relative, target, destination / "staging", compressor)
        manifest[relative] = hashed
    return manifest


_built: dict[tuple, dict[str, str]] = {}


def _signature(source: Path) -> tuple:
    return tuple((p, (s := (source / p).stat()).st_size, s.st_mtime_ns)
                 for p in _source_files(source))


def build_once(source: Path, destination: Path) -> dict[str, str]:
    """``build``, remembered for this process while no source file changes (the test suite
    makes hundreds of apps)."""
    key = (source, destination, _signature(source))
    if key not in _built:
        _built[key] = build(source, destination)
    return _built[key]


def _build_candidates(app: Flask) -> list[Path]:
    configured = app.config.get("STATIC_BUILD_DIR")
    if configured:
        return [Path(configured)]
    return [Path(app.instance_path) / "static-build",
            Path(tempfile.gettempdir()) / f"simplechat-static-{os.getuid()}"]


def _build_where_possible(app: Flask, source: Path) -> tuple[Path, dict[str, str]]:
    """The first candidate folder that holds, or can be given, the build; and the manifest. A
    read-only folder built in advance (the Docker image's) serves as it is."""
    failures = []
    for candidate in _build_candidates(app):
        try:
            return candidate.resolve(), build_once(source, candidate.resolve())
        except OSError as exc:
            failures.append(f"{candidate}: {exc}")
            log.warning("static files cannot be built in %s: %s", candidate, exc)
    raise RuntimeError("no folder for the static build: " + "; ".join(failures))


def _no_sniff(headers: Headers, path: str, url: str) -> None:
    headers["X-Content-Type-Options"] = "nosniff"


def init_static_files(app: Flask) -> None:
    """Hash and compress the static folder, make ``url_for('static')`` give hashed URLs, and
    put WhiteNoise in front of the app for them (Socket.IO and every other path pass by)."""
    source = Path(app.static_folder).resolve()
    destination, manifest = _build_where_possible(app, source)
    app.extensions["static_manifest"] = manifest

    @app.url_defaults
    def hashed_static_url(endpoint: str, values: dict) -> None:
        if endpoint == "static" and "filename" in values:
            values["filename"] = manifest.get(values["filename"], values["filename"])

    app.wsgi_app = HashedStaticFiles(
        app.wsgi_app,
        root=destination / "files",
        prefix=app.static_url_path,
        max_age=None,
        allow_all_origins=False,
        add_headers_function=_no_sniff,
    )


def main() -> None:
    """``python -m simplechat.web.static_files [DESTINATION]``: build ahead of time (the Docker
    image does, so containers start without compressing anything); serve it with
    STATIC_BUILD_DIR."""
    import sys

    destination = Path(sys.argv[1] if len(sys.argv) > 1 else "static-build").resolve()
    manifest = build(Path(__file__).resolve().parent / "static", destination)
    print(f"{len(manifest)} static files in {destination / 'files'}")


if __name__ == "__main__":
    main()
