"""Write a seeded, deterministic demo workspace that matches the demo `feature_views/*.yaml`.

Layout under the workspace root (paths as the YAML names them):

    data/events/part-YYYY-MM-DD.parquet       user_id, artwork_id, action, dwell_ms, event_ts
    data/impressions/part-YYYY-MM-DD.parquet  user_id, artwork_id, ts, clicked (the spine)
    data/user_profiles/part-0.parquet         slowly changing profiles (valid_from, created_at)
    data/artworks/part-0.parquet              artwork metadata versions (updated_ts, created_at)
    data/artwork_embeddings.lance             Lance dataset: artwork_id, vector float32[64]
    workspace.json                            marker: {"kind": "daedalus-demo", ...}

The data is built to exercise point-in-time edge cases, not only to look plausible: impressions
that tie exactly with events of the same user, clicks whose view event carries the impression's
own timestamp, impressions exactly one availability delay (5 minutes) after a view of their
artwork, NaN and null dwell values, profile rows written hours after they became valid,
corrections sharing a `valid_from`, values older than the views' TTLs, and ~1% of artworks
missing from the embedding store.

Every random draw comes from a generator seeded by (seed, stream, day), so the same seed gives
byte-identical parquet files, and each day is generated and written on its own (memory is
bounded by one day of events, whatever the date range).

Running it again on a complete workspace of the same configuration (scale, seed, start, days)
writes nothing at all: the files keep their bytes and modification times, so nothing trained
from them turns stale. A complete workspace of another configuration is only replaced when
asked to (`overwrite=True`); an interrupted one is simply written again.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "ACTIONS",
    "ARTWORKS_SCHEMA",
    "EMBEDDINGS_SCHEMA",
    "EMBEDDING_DIM",
    "EVENTS_SCHEMA",
    "IMPRESSIONS_SCHEMA",
    "MARKER_KIND",
    "MARKER_NAME",
    "SCALES",
    "STYLES",
    "USER_PROFILES_SCHEMA",
    "DemoScale",
    "DemoSummary",
    "WorkspaceConflictError",
    "WorkspaceNotEmptyError",
    "demo_start",
    "is_demo_workspace",
    "write_demo_workspace",
]

# --------------------------------------------------------------------------- contract

MARKER_NAME = "workspace.json"
MARKER_KIND = "daedalus-demo"
CREATED_BY = "daeda demo init"

EVENTS_DIR = "data/events"
IMPRESSIONS_DIR = "data/impressions"
USER_PROFILES_DIR = "data/user_profiles"
ARTWORKS_DIR = "data/artworks"
EMBEDDINGS_PATH = "data/artwork_embeddings.lance"
EMBEDDING_DIM = 64

_TS = pa.timestamp("us", tz="UTC")

# Column names, order and types are those of feature_views/*.yaml (tests check it against the
# loaded catalog); written explicitly so a numpy dtype can never leak into a file.
EVENTS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("artwork_id", pa.int64()),
        ("action", pa.string()),
        ("dwell_ms", pa.float64()),
        ("event_ts", _TS),
    ]
)
IMPRESSIONS_SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("artwork_id", pa.int64()), ("ts", _TS), ("clicked", pa.bool_())]
)
USER_PROFILES_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("valid_from", _TS),
        ("created_at", _TS),
        ("country", pa.string()),
        ("is_premium", pa.bool_()),
        ("follower_count", pa.int64()),
        ("preferred_style", pa.string()),
    ]
)
ARTWORKS_SCHEMA = pa.schema(
    [
        ("artwork_id", pa.int64()),
        ("author_id", pa.int64()),
        ("updated_ts", _TS),
        ("created_at", _TS),
        ("style", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("nsfw", pa.bool_()),
        ("aspect_ratio", pa.float32()),
    ]
)
EMBEDDINGS_SCHEMA = pa.schema(
    [("artwork_id", pa.int64()), ("vector", pa.list_(pa.float32(), EMBEDDING_DIM))]
)

ACTIONS = ("view", "like", "bookmark", "generate")
_VIEW, _LIKE, _BOOKMARK, _GENERATE = range(4)

STYLES = (
    "anime",
    "realistic",
    "fantasy",
    "cyberpunk",
    "watercolor",
    "pixel-art",
    "chibi",
    "3d-render",
    "oil-painting",
    "sketch",
    "vaporwave",
    "ukiyo-e",
)
_STYLE_P = np.array([0.22, 0.12, 0.10, 0.09, 0.08, 0.07, 0.07, 0.06, 0.05, 0.05, 0.05, 0.04])
_STYLE_TAGS = (
    ("1girl", "school-uniform", "cel-shading", "idol", "magical-girl"),
    ("photorealistic", "portrait", "bokeh", "street", "studio-light"),
    ("dragon", "castle", "elf", "knight", "magic"),
    ("neon", "mecha", "rain", "hacker", "megacity"),
    ("soft-colors", "flowers", "paper-texture", "pastel", "botanical"),
    ("8bit", "sprite", "retro-game", "isometric", "tileset"),
    ("cute", "big-eyes", "kawaii", "mascot", "sticker"),
    ("octane", "low-poly", "blender", "isometric-room", "clay"),
    ("impasto", "baroque", "still-life", "canvas", "classical"),
    ("lineart", "pencil", "monochrome", "concept-art", "gesture"),
    ("synthwave", "palm-trees", "sunset-grid", "retro", "glitch"),
    ("woodblock", "wave", "edo", "mount-fuji", "sumi-e"),
)
_GENERAL_TAGS = (
    "portrait",
    "landscape",
    "night",
    "sky",
    "city",
    "cat",
    "dog",
    "ocean",
    "forest",
    "winter",
    "summer",
    "rain",
    "smile",
    "sword",
    "flowers",
    "moon",
    "stars",
    "masterpiece",
    "wallpaper",
    "character-design",
)
# One flat tag vocabulary: style tags first (style s owns ids 5s..5s+4), then the general tags.
_TAG_VOCAB = tuple(t for tags in _STYLE_TAGS for t in tags) + _GENERAL_TAGS
_N_STYLE_TAGS = 5
_GENERAL_BASE = len(STYLES) * _N_STYLE_TAGS
_NSFW_P = np.array([0.06, 0.08, 0.05, 0.04, 0.01, 0.01, 0.01, 0.03, 0.04, 0.03, 0.03, 0.02])
_ASPECTS = np.array([1.0, 0.75, 4 / 3, 9 / 16, 16 / 9, 2 / 3, 1.5], dtype=np.float32)
_ASPECT_P = np.array([0.30, 0.20, 0.10, 0.15, 0.10, 0.10, 0.05])

_COUNTRIES = ("US", "JP", "KR", "CN", "TW", "DE", "FR", "GB", "BR", "ID", "IN", "CA", "RU", "TH")
_COUNTRY_P = np.array(
    [0.24, 0.20, 0.08, 0.07, 0.05, 0.05, 0.04, 0.05, 0.05, 0.04, 0.04, 0.03, 0.03, 0.03]
)

_US = 1
_SECOND = 1_000_000 * _US
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
# The availability delay of artwork_popularity.yaml; some impressions land exactly on it.
_POPULARITY_DELAY = 5 * _MINUTE

# User and artwork ids live in disjoint ranges so that a join on the wrong key matches nothing
# instead of silently matching something.
_USER_ID_BASE = 1
_ARTWORK_ID_BASE = 10_000_001

# Random streams: each part of the data draws from its own generator, so changing how one part
# is built never shifts the numbers of another.
_S_USERS, _S_ARTWORKS, _S_EMBED, _S_PROFILES, _S_META, _S_DAY = range(6)

# Activity over the day (UTC): peak around 21:00, trough around 09:00, per minute.
_MINUTE_OF_DAY = np.arange(24 * 60)
_DIURNAL_CDF = np.cumsum(1.0 + 0.7 * np.cos(2 * np.pi * (_MINUTE_OF_DAY / 60.0 - 21.0) / 24.0))


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class DemoScale:
    """How big a demo workspace is: population, default length and daily volumes.

    `hot_user_share` is the one power user's share of all events: about three times the
    busiest ordinary user's, whose share shrinks as the population grows.
    """

    name: str
    users: int
    artworks: int
    days: int
    events_per_day: int
    impressions_per_day: int
    hot_user_share: float


SCALES: dict[str, DemoScale] = {
    s.name: s
    for s in (
        # name, users, artworks, days, events/day, impressions/day, hot user's share
        DemoScale("tiny", 100, 300, 5, 800, 200, 0.12),
        DemoScale("small", 2_000, 5_000, 14, 10_400, 2_150, 0.06),
        DemoScale("medium", 20_000, 50_000, 30, 64_000, 13_500, 0.04),
        DemoScale("large", 500_000, 200_000, 30, 325_000, 33_500, 0.03),
    )
}


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What `write_demo_workspace` wrote, or found. `end` is the last day with data (inclusive).

    `status` says what the call did: `created` (no demo workspace was there), `completed` (an
    interrupted or damaged one was written again), `rewritten` (a complete one was replaced, as
    `overwrite=True` asked) or `unchanged` (the same workspace was already complete: nothing
    written, and the counts describe the files found).
    """

    root: Path
    scale: str
    seed: int
    start: dt.date
    end: dt.date
    days: int
    events_dir: Path
    impressions_dir: Path
    user_profiles_path: Path
    artworks_path: Path
    embeddings_path: Path
    marker_path: Path
    event_files: tuple[Path, ...]
    impression_files: tuple[Path, ...]
    users: int
    artworks: int
    hot_user_id: int
    event_rows: int
    impression_rows: int
    clicked_rows: int
    user_profile_rows: int
    artwork_rows: int
    embedding_rows: int
    missing_embedding_ids: tuple[int, ...]
    lance_version: int
    status: str = "created"

    @property
    def written(self) -> bool:
        """Whether this call wrote anything (False only when the workspace was unchanged)."""
        return self.status != "unchanged"


class WorkspaceNotEmptyError(FileExistsError):
    """The target directory holds files and is not a demo workspace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        super().__init__(
            f"{root} is not empty and is not a demo workspace (no {MARKER_NAME} of kind "
            f"{MARKER_KIND!r}); choose an empty or new directory, or pass overwrite=True "
            "to write the demo files into it anyway (nothing else there is touched)"
        )


class WorkspaceConflictError(FileExistsError):
    """The target directory holds a complete demo workspace of another configuration."""

    def __init__(self, root: Path, existing: dict[str, object], wanted: dict[str, object]) -> None:
        self.root = root
        self.existing = existing
        self.wanted = wanted
        super().__init__(
            f"{root} already holds a complete demo workspace ({_describe(existing)}), not "
            f"the one asked for ({_describe(wanted)}); pass overwrite=True "
            "(daeda demo init --overwrite) to replace it"
        )


def _describe(config: dict[str, object]) -> str:
    return (
        f"scale {config.get('scale')}, seed {config.get('seed')}, "
        f"days {config.get('start')} … {config.get('end')}"
    )


def is_demo_workspace(root: str | Path) -> bool:
    """True when `root` holds a marker file written by this generator (complete or not)."""
    marker = Path(root) / MARKER_NAME
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("kind") == MARKER_KIND


# --------------------------------------------------------------------------- entry point


def write_demo_workspace(
    root: str | Path,
    *,
    scale: str | DemoScale = "small",
    seed: int = 7,
    start: dt.date = dt.date(2026, 10, 1),
    days: int | None = None,
    overwrite: bool = False,
) -> DemoSummary:
    """Generate the demo workspace under `root` and return what was written (or found).

    `days` defaults to the scale's length; the data covers `start` .. `start + days - 1`
    (UTC days), with profile and artwork history reaching back before `start`.

    `root` may be missing or empty (the workspace is created), or a demo workspace:
    - complete, with every file in place, and of the same scale, seed, start and days: nothing
      is written (`status == "unchanged"`) unless `overwrite=True`, which writes it again;
    - complete but of another configuration: refused with WorkspaceConflictError unless
      `overwrite=True`, which replaces it;
    - interrupted (its marker says `complete: false`) or missing some of its files: written
      again, whatever configuration it had.
    A workspace being written again has its demo files replaced and stale day files of an
    earlier, longer run removed; the Lance dataset gets a new version. Any other non-empty
    directory is refused with WorkspaceNotEmptyError unless `overwrite=True`, which writes the
    demo files into it but deletes nothing.

    Raises ValueError for an unknown scale, a negative seed or `days < 1`,
    NotADirectoryError when `root` is a file, WorkspaceNotEmptyError and
    WorkspaceConflictError (both FileExistsError) as above.
    """
    spec = _resolve_scale(scale)
    n_days = spec.days if days is None else days
    if isinstance(n_days, bool) or not isinstance(n_days, int) or n_days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(start, dt.datetime) or not isinstance(start, dt.date):
        raise ValueError(f"start must be a datetime.date, got {start!r}")

    root = Path(root)
    end = start + dt.timedelta(days=n_days - 1)
    wanted = _config(spec.name, seed, start, end)
    layout = _Layout.of(root, start, n_days)
    state, existing = _inspect_target(root, wanted)
    if state == "foreign" and not overwrite:
        raise WorkspaceNotEmptyError(root)
    if state == "other" and not overwrite:
        raise WorkspaceConflictError(root, existing, wanted)
    if state == "same" and not overwrite:
        found = _summary_of_existing(root, spec, seed, start, n_days, layout)
        if found is not None:
            return found
        state = "damaged"  # the files are there but do not read back: write them again
    was_demo = state in ("damaged", "same", "other")
    status = {"same": "rewritten", "other": "rewritten", "damaged": "completed"}.get(
        state, "created"
    )

    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER_NAME
    # The marker goes first (before any directory of data) so an interrupted run leaves a
    # directory that a rerun recognises as its own; `complete` tells readers whether the data
    # under it is whole.
    _write_marker(marker, spec.name, seed, start, end, complete=False)
    dirs = [root / d for d in (EVENTS_DIR, IMPRESSIONS_DIR, USER_PROFILES_DIR, ARTWORKS_DIR)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)

    world = _World.build(spec, seed, start, n_days)

    profiles = _user_profiles(world, seed)
    profiles_path = layout.user_profiles
    _write_parquet(profiles, profiles_path)
    artworks = _artwork_versions(world, seed)
    artworks_path = layout.artworks
    _write_parquet(artworks, artworks_path)
    embeddings_path = layout.embeddings
    missing, embedding_rows, lance_version = _write_embeddings(world, seed, embeddings_path)

    event_files: list[Path] = []
    impression_files: list[Path] = []
    event_rows = impression_rows = clicked_rows = 0
    carry = _Events.empty()
    for day_index in range(n_days):
        events, impressions, carry = _simulate_day(world, seed, day_index, carry)
        ev_path = layout.events[day_index]
        im_path = layout.impressions[day_index]
        _write_parquet(events, ev_path)
        _write_parquet(impressions, im_path)
        event_files.append(ev_path)
        impression_files.append(im_path)
        event_rows += events.num_rows
        impression_rows += impressions.num_rows
        clicked_rows += int(pc.sum(impressions["clicked"]).as_py() or 0)

    if was_demo:
        keep = {*event_files, *impression_files, profiles_path, artworks_path}
        _remove_stale_parts(dirs, keep)
    _write_marker(marker, spec.name, seed, start, end, complete=True)

    return DemoSummary(
        root=root,
        scale=spec.name,
        seed=seed,
        start=start,
        end=end,
        days=n_days,
        events_dir=root / EVENTS_DIR,
        impressions_dir=root / IMPRESSIONS_DIR,
        user_profiles_path=profiles_path,
        artworks_path=artworks_path,
        embeddings_path=embeddings_path,
        marker_path=marker,
        event_files=tuple(event_files),
        impression_files=tuple(impression_files),
        users=world.n_users,
        artworks=world.n_artworks,
        hot_user_id=int(world.user_ids[world.hot_user]),
        event_rows=event_rows,
        impression_rows=impression_rows,
        clicked_rows=clicked_rows,
        user_profile_rows=profiles.num_rows,
        artwork_rows=artworks.num_rows,
        embedding_rows=embedding_rows,
        missing_embedding_ids=missing,
        lance_version=lance_version,
        status=status,
    )


def _resolve_scale(scale: str | DemoScale) -> DemoScale:
    if isinstance(scale, DemoScale):
        return scale
    if scale not in SCALES:
        raise ValueError(f"unknown demo scale {scale!r}; known: {', '.join(SCALES)}")
    return SCALES[scale]


@dataclass(frozen=True, slots=True)
class _Layout:
    """The files a demo workspace of one start and length consists of."""

    root: Path
    events: tuple[Path, ...]
    impressions: tuple[Path, ...]
    user_profiles: Path
    artworks: Path
    embeddings: Path

    @classmethod
    def of(cls, root: Path, start: dt.date, n_days: int) -> _Layout:
        days = [(start + dt.timedelta(days=i)).isoformat() for i in range(n_days)]
        return cls(
            root=root,
            events=tuple(root / EVENTS_DIR / f"part-{d}.parquet" for d in days),
            impressions=tuple(root / IMPRESSIONS_DIR / f"part-{d}.parquet" for d in days),
            user_profiles=root / USER_PROFILES_DIR / "part-0.parquet",
            artworks=root / ARTWORKS_DIR / "part-0.parquet",
            embeddings=root / EMBEDDINGS_PATH,
        )

    def intact(self) -> bool:
        """Every file in place, and no other day file that a glob of the sources would pick up."""
        expected = {
            self.root / EVENTS_DIR: set(self.events),
            self.root / IMPRESSIONS_DIR: set(self.impressions),
            self.root / USER_PROFILES_DIR: {self.user_profiles},
            self.root / ARTWORKS_DIR: {self.artworks},
        }
        for d, files in expected.items():
            if not all(f.is_file() for f in files) or set(d.glob("part-*.parquet")) != files:
                return False
        return (self.embeddings / "_versions").is_dir()


_CONFIG_KEYS = ("scale", "seed", "start", "end")


def _config(scale: str, seed: int, start: dt.date, end: dt.date) -> dict[str, object]:
    """What identifies a demo workspace's data (as its marker records it)."""
    return {"scale": scale, "seed": seed, "start": start.isoformat(), "end": end.isoformat()}


def demo_start(root: Path) -> dt.date | None:
    """The first day its marker records for the workspace at `root`, or None (no marker, or
    one without a readable `start`)."""
    try:
        marker = json.loads((Path(root) / MARKER_NAME).read_text(encoding="utf-8"))
        return dt.date.fromisoformat(marker["start"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _inspect_target(root: Path, wanted: dict[str, object]) -> tuple[str, dict[str, object]]:
    """What `root` holds: (state, the configuration its marker records).

    States: `new` (missing or empty), `foreign` (files, but no demo marker), `damaged` (a demo
    workspace whose run did not finish, or with files missing), `same` (complete, this
    configuration) or `other` (complete, another configuration).
    """
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} exists and is not a directory")
    # A marker temp file alone is what a run interrupted while writing its first marker leaves.
    if not root.exists() or all(p.name == f".{MARKER_NAME}.tmp" for p in root.iterdir()):
        return "new", {}
    try:
        marker = json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = None
    if not isinstance(marker, dict) or marker.get("kind") != MARKER_KIND:
        return "foreign", {}
    existing = {k: marker.get(k) for k in _CONFIG_KEYS}
    if marker.get("complete") is not True:
        return "damaged", existing
    try:  # the files of the workspace the marker describes, not of the one asked for
        start = dt.date.fromisoformat(str(existing["start"]))
        n_days = (dt.date.fromisoformat(str(existing["end"])) - start).days + 1
    except ValueError:
        return "damaged", existing
    if n_days < 1 or not _Layout.of(root, start, n_days).intact():
        return "damaged", existing
    return ("same" if existing == wanted else "other"), existing


def _summary_of_existing(
    root: Path, spec: DemoScale, seed: int, start: dt.date, n_days: int, layout: _Layout
) -> DemoSummary | None:
    """Describe a complete workspace without writing anything; None if its files do not read."""
    import lance  # heavy; only the commands that write or read vectors should pay for it

    world = _World.build(spec, seed, start, n_days)
    try:
        event_rows = sum(pq.read_metadata(p).num_rows for p in layout.events)
        impression_rows = clicked_rows = 0
        for path in layout.impressions:
            clicked = pq.read_table(path, columns=["clicked"])["clicked"]
            impression_rows += len(clicked)
            clicked_rows += int(pc.sum(clicked).as_py() or 0)
        user_profile_rows = pq.read_metadata(layout.user_profiles).num_rows
        artwork_rows = pq.read_metadata(layout.artworks).num_rows
        ds = lance.dataset(str(layout.embeddings))
        embedding_rows, lance_version = int(ds.count_rows()), int(ds.version)
    except (OSError, ValueError, RuntimeError, pa.ArrowException):
        return None  # a file that does not read back: the answer is to write it again
    return DemoSummary(
        root=root,
        scale=spec.name,
        seed=seed,
        start=start,
        end=start + dt.timedelta(days=n_days - 1),
        days=n_days,
        events_dir=root / EVENTS_DIR,
        impressions_dir=root / IMPRESSIONS_DIR,
        user_profiles_path=layout.user_profiles,
        artworks_path=layout.artworks,
        embeddings_path=layout.embeddings,
        marker_path=root / MARKER_NAME,
        event_files=layout.events,
        impression_files=layout.impressions,
        users=world.n_users,
        artworks=world.n_artworks,
        hot_user_id=int(world.user_ids[world.hot_user]),
        event_rows=event_rows,
        impression_rows=impression_rows,
        clicked_rows=clicked_rows,
        user_profile_rows=user_profile_rows,
        artwork_rows=artwork_rows,
        embedding_rows=embedding_rows,
        missing_embedding_ids=tuple(int(i) for i in world.artwork_ids[_missing(world, seed)]),
        lance_version=lance_version,
        status="unchanged",
    )


def _remove_stale_parts(dirs: list[Path], keep: set[Path]) -> None:
    """Delete day files an earlier run wrote and this one did not (they would be globbed)."""
    for d in dirs:
        for path in d.glob("part-*.parquet"):
            if path not in keep:
                path.unlink()
        for path in d.glob(".part-*.tmp"):  # leftovers of an interrupted write
            path.unlink()


def _write_marker(
    path: Path, scale: str, seed: int, start: dt.date, end: dt.date, *, complete: bool
) -> None:
    marker = {
        "kind": MARKER_KIND,
        "scale": scale,
        "seed": seed,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "created_by": CREATED_BY,
        "complete": complete,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Write atomically (temp file, then rename), so a reader never globs a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=128 * 1024)
    os.replace(tmp, path)


def _rng(seed: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *extra])


def _ts_array(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64, copy=False), type=_TS)


def _epoch_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * _DAY


# --------------------------------------------------------------------------- the world


def _zipf_weights(rng: np.random.Generator, n: int, offset: float, exponent: float) -> np.ndarray:
    """Zipf–Mandelbrot weights (rank + offset)^-exponent, assigned to ids in random order."""
    weights = (np.arange(n) + offset) ** -exponent
    return weights[rng.permutation(n)]


def _sample_cdf(
    rng: np.random.Generator, cdf: np.ndarray, n: int, limit: int | None = None
) -> np.ndarray:
    """Draw `n` indices in [0, limit) with probability proportional to the cdf's steps."""
    top = cdf[-1] if limit is None else cdf[limit - 1]
    u = rng.random(n) * top
    # Searching sorted needles walks the cdf in order (cache-friendly, ~3x faster on the large
    # scale); the answer is the same as searching them as drawn.
    order = np.argsort(u)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.searchsorted(cdf, u[order], side="right")
    return out


@dataclass(slots=True)
class _World:
    """Who and what exists: users with tastes, artworks with styles, vectors and popularity."""

    spec: DemoScale
    start_us: int
    end_us: int  # exclusive: midnight after the last day
    n_days: int
    n_users: int
    n_artworks: int
    user_ids: np.ndarray
    user_cdf: np.ndarray  # activity; the hot user has weight 0 here and a fixed share instead
    hot_user: int
    taste1: np.ndarray  # favourite style per user
    taste2: np.ndarray  # second style per user
    signup_us: np.ndarray
    artwork_ids: np.ndarray
    style: np.ndarray
    author: np.ndarray  # user index
    created_us: np.ndarray  # ascending: artwork ids are handed out in creation order
    art_cdf: np.ndarray
    popularity: np.ndarray  # popularity percentile in [0, 1); bounded so CTR holds across scales
    style_members: list[np.ndarray]
    style_cdf: list[np.ndarray]
    vectors: np.ndarray  # float32 (n_artworks, dim), unit length
    projection: np.ndarray  # vectors · style centroids, (n_artworks, n_styles)

    @classmethod
    def build(cls, spec: DemoScale, seed: int, start: dt.date, n_days: int) -> _World:
        start_us = _epoch_us(start)
        end_us = start_us + n_days * _DAY
        n_styles = len(STYLES)

        rng = _rng(seed, _S_USERS)
        n_users = spec.users
        user_weights = _zipf_weights(rng, n_users, offset=10.0, exponent=1.0)
        hot_user = int(np.argmax(user_weights))
        user_weights[hot_user] = 0.0
        taste1 = rng.choice(n_styles, n_users, p=_STYLE_P).astype(np.int64)
        # A second style different from the first, so every user likes exactly two.
        taste2 = (taste1 + rng.integers(1, n_styles, n_users)) % n_styles
        # Sign-ups reach 540 days back: older than the profiles' 180-day TTL on purpose.
        signup_us = start_us - rng.integers(_DAY, 540 * _DAY, n_users)

        rng = _rng(seed, _S_ARTWORKS)
        n_art = spec.artworks
        # ~6% of artworks are made during the range (each with its own `generate` event).
        n_new = min(max(1, round(0.06 * n_art)), n_art - 1) if n_art > 1 else 0
        n_old = n_art - n_new
        author_weights = _zipf_weights(rng, n_users, offset=2.0, exponent=1.1)
        author = _sample_cdf(rng, np.cumsum(author_weights), n_art)
        # The back catalogue reaches 400 days back (past the artworks' 365-day TTL), but no
        # artwork predates its author's sign-up.
        lo = np.maximum(signup_us[author[:n_old]] + _HOUR, start_us - 400 * _DAY)
        old_us = lo + (rng.random(n_old) * (start_us - lo)).astype(np.int64)
        new_day = rng.integers(0, n_days, n_new)
        new_us = start_us + new_day * _DAY + _diurnal_offsets(rng, n_new)
        created_us = np.concatenate([old_us, new_us])
        by_time = np.argsort(created_us, kind="stable")
        created_us, author = created_us[by_time], author[by_time]
        # Authors mostly draw in their own favourite style.
        style = np.where(
            rng.random(n_art) < 0.6,
            taste1[author],
            rng.choice(n_styles, n_art, p=_STYLE_P),
        ).astype(np.int64)
        art_weights = _zipf_weights(rng, n_art, offset=5.0, exponent=1.05)
        popularity = np.empty(n_art)
        popularity[np.argsort(art_weights, kind="stable")] = np.arange(n_art) / n_art
        style_members = [np.flatnonzero(style == s) for s in range(n_styles)]
        style_cdf = [np.cumsum(art_weights[m]) for m in style_members]

        rng = _rng(seed, _S_EMBED)
        # Orthonormal style centroids plus isotropic noise: within-style cosine ≈ 0.5,
        # across styles ≈ 0, like a CLIP space clustered by style.
        q, _ = np.linalg.qr(rng.standard_normal((EMBEDDING_DIM, EMBEDDING_DIM)))
        centroids = q[:n_styles].astype(np.float32)
        vectors = rng.standard_normal((n_art, EMBEDDING_DIM), dtype=np.float32)
        vectors *= np.float32(0.12)
        vectors += centroids[style]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        projection = vectors @ centroids.T

        return cls(
            spec=spec,
            start_us=start_us,
            end_us=end_us,
            n_days=n_days,
            n_users=n_users,
            n_artworks=n_art,
            user_ids=_USER_ID_BASE + np.arange(n_users, dtype=np.int64),
            user_cdf=np.cumsum(user_weights),
            hot_user=hot_user,
            taste1=taste1,
            taste2=taste2,
            signup_us=signup_us,
            artwork_ids=_ARTWORK_ID_BASE + np.arange(n_art, dtype=np.int64),
            style=style,
            author=author,
            created_us=created_us,
            art_cdf=np.cumsum(art_weights),
            popularity=popularity,
            style_members=style_members,
            style_cdf=style_cdf,
            vectors=vectors,
            projection=projection,
        )

    def similarity(self, users: np.ndarray, arts: np.ndarray) -> np.ndarray:
        """Cosine between a user's taste (favourite + half second style) and an artwork."""
        p = self.projection
        return (p[arts, self.taste1[users]] + 0.5 * p[arts, self.taste2[users]]) / math.sqrt(1.25)

    def sample_users(self, rng: np.random.Generator, n: int, hot_share: float) -> np.ndarray:
        users = _sample_cdf(rng, self.user_cdf, n)
        users[rng.random(n) < hot_share] = self.hot_user
        return users

    def sample_artworks(
        self,
        rng: np.random.Generator,
        users: np.ndarray,
        eligible: int,
        p_first: float,
        p_second: float,
    ) -> np.ndarray:
        """Artworks for `users`: from their favourite / second style or the popular pool.

        Only the first `eligible` artworks (those created before the day) can be drawn.
        """
        n = users.size
        r = rng.random(n)
        wanted = np.where(
            r < p_first,
            self.taste1[users],
            np.where(r < p_first + p_second, self.taste2[users], -1),
        )
        for s, members in enumerate(self.style_members):
            limit = int(np.searchsorted(members, eligible))
            if not limit:  # a style with no artwork yet falls back to the popular pool
                wanted[wanted == s] = -1
        out = np.empty(n, dtype=np.int64)
        pool = np.flatnonzero(wanted < 0)
        out[pool] = _sample_cdf(rng, self.art_cdf, pool.size, eligible)
        for s, members in enumerate(self.style_members):
            rows = np.flatnonzero(wanted == s)
            if rows.size:
                limit = int(np.searchsorted(members, eligible))
                out[rows] = members[_sample_cdf(rng, self.style_cdf[s], rows.size, limit)]
        return out


def _diurnal_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microseconds after midnight, following the daily activity curve."""
    minute = np.searchsorted(_DIURNAL_CDF, rng.random(n) * _DIURNAL_CDF[-1], side="right")
    return minute * _MINUTE + rng.integers(0, _MINUTE, n)


# --------------------------------------------------------------------------- dimensions


def _lag_us(rng: np.random.Generator, n: int, p_zero: float, p_late: float) -> np.ndarray:
    """How long after becoming valid a row was written: often at once, sometimes hours late."""
    r = rng.random(n)
    seconds = rng.integers(1, 5 * _MINUTE, n)
    hours = rng.integers(_HOUR, 36 * _HOUR, n)
    return np.where(r < p_zero, 0, np.where(r < 1.0 - p_late, seconds, hours))


def _user_profiles(world: _World, seed: int) -> pa.Table:
    """Profile versions: one before the range for everyone, up to three more for some users."""
    rng = _rng(seed, _S_PROFILES)
    n = world.n_users
    extra = rng.choice(4, n, p=[0.70, 0.20, 0.07, 0.03])
    extra[world.hot_user] = 3
    # Later versions fall half before the range, half inside it, in order per user.
    lo = world.signup_us + _HOUR
    inside = rng.random((n, 3)) < 0.5
    before = lo[:, None] + (rng.random((n, 3)) * (world.start_us - lo)[:, None]).astype(np.int64)
    during = world.start_us + rng.integers(0, world.end_us - world.start_us, (n, 3))
    later = np.where(inside, during, before)
    later = np.where(np.arange(3)[None, :] < extra[:, None], later, np.iinfo(np.int64).max)
    later.sort(axis=1)

    country = rng.choice(len(_COUNTRIES), n, p=_COUNTRY_P)
    premium = rng.random(n) < 0.12
    is_author = np.bincount(world.author, minlength=n) > 0
    followers = np.floor(rng.lognormal(2.5 + 1.5 * is_author, 1.4, n)).astype(np.int64)
    style = np.where(rng.random(n) < 0.03, -1, world.taste1)  # -1: never filled in

    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("user", "vf", "country", "prem", "fol", "style")
    }

    def emit(idx: np.ndarray, vf: np.ndarray) -> None:
        cols["user"].append(idx)
        cols["vf"].append(vf)
        cols["country"].append(country[idx].copy())
        cols["prem"].append(premium[idx].copy())
        cols["fol"].append(followers[idx].copy())
        cols["style"].append(style[idx].copy())

    emit(np.arange(n), world.signup_us)
    for v in range(3):
        idx = np.flatnonzero(extra > v)
        k = idx.size
        moved = rng.random(k) < 0.05
        country[idx] = np.where(moved, rng.choice(len(_COUNTRIES), k, p=_COUNTRY_P), country[idx])
        flip = rng.random(k) < np.where(premium[idx], 0.2, 0.15)
        premium[idx] ^= flip
        followers[idx] = followers[idx] + np.floor(
            followers[idx] * rng.uniform(0.0, 0.5, k) + rng.integers(0, 20, k)
        ).astype(np.int64)
        r = rng.random(k)
        style[idx] = np.where(r < 0.2, world.taste2[idx], np.where(r < 0.23, -1, style[idx]))
        emit(idx, later[idx, v])

    user = np.concatenate(cols["user"])
    vf = np.concatenate(cols["vf"])
    created = vf + _lag_us(rng, user.size, p_zero=0.6, p_late=0.05)
    country_a = np.concatenate(cols["country"])
    prem_a = np.concatenate(cols["prem"])
    fol_a = np.concatenate(cols["fol"])
    style_a = np.concatenate(cols["style"])

    # Corrections: the same valid_from rewritten later with another follower count, so the
    # as-of join must break the tie on created_at.
    fix = np.sort(rng.choice(user.size, max(1, round(0.01 * user.size)), replace=False))
    user = np.concatenate([user, user[fix]])
    vf = np.concatenate([vf, vf[fix]])
    created = np.concatenate([created, created[fix] + rng.integers(_MINUTE, 12 * _HOUR, fix.size)])
    country_a = np.concatenate([country_a, country_a[fix]])
    prem_a = np.concatenate([prem_a, prem_a[fix]])
    fol_a = np.concatenate([fol_a, fol_a[fix] + rng.integers(1, 50, fix.size)])
    style_a = np.concatenate([style_a, style_a[fix]])

    order = np.lexsort((created, vf, user))
    style_o = style_a[order]
    return pa.Table.from_arrays(
        [
            pa.array(world.user_ids[user[order]], pa.int64()),
            _ts_array(vf[order]),
            _ts_array(created[order]),
            pa.array(_COUNTRIES).take(pa.array(country_a[order])),
            pa.array(prem_a[order], pa.bool_()),
            pa.array(fol_a[order], pa.int64()),
            pa.array(STYLES).take(pa.array(np.maximum(style_o, 0), mask=style_o < 0)),
        ],
        schema=USER_PROFILES_SCHEMA,
    )


def _tag_lists(rows: np.ndarray) -> pa.Array:
    """A list<string> array from a (n, n_cols) matrix of tag ids padded with -1."""
    valid = rows >= 0
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    values = pa.array(_TAG_VOCAB).take(pa.array(rows[valid]))
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), values, type=pa.list_(pa.string())
    )


def _artwork_versions(world: _World, seed: int) -> pa.Table:
    """Artwork metadata: a first version at creation, a second one for ~15% of artworks."""
    rng = _rng(seed, _S_META)
    n = world.n_artworks
    n_general = len(_GENERAL_TAGS)
    # Tags: up to 3 of the style's own tags and up to 3 general ones, no repeats; ~1% have
    # none at all (an empty list, which is not a null).
    k_style = rng.integers(0, 4, n)
    k_general = rng.integers(0, 4, n)
    k_style[(k_style + k_general) == 0] = 1
    untagged = rng.random(n) < 0.01
    k_style[untagged] = 0
    k_general[untagged] = 0
    style_pick = np.argsort(rng.random((n, _N_STYLE_TAGS), dtype=np.float32), axis=1)[:, :3]
    general_pick = np.argsort(rng.random((n, n_general), dtype=np.float32), axis=1)[:, :4]
    cols = np.arange(3)[None, :]
    tags1 = np.full((n, 7), -1, dtype=np.int64)
    tags1[:, :3] = np.where(
        cols < k_style[:, None], world.style[:, None] * _N_STYLE_TAGS + style_pick, -1
    )
    tags1[:, 3:6] = np.where(cols < k_general[:, None], _GENERAL_BASE + general_pick[:, :3], -1)
    nsfw1 = rng.random(n) < _NSFW_P[world.style]
    aspect = rng.choice(_ASPECTS, n, p=_ASPECT_P)
    odd = rng.random(n) < 0.03
    aspect[odd] = rng.uniform(0.4, 2.5, int(odd.sum())).astype(np.float32)
    updated1 = world.created_us
    created1 = updated1 + _lag_us(rng, n, p_zero=0.2, p_late=0.03)

    # Second versions: a new general tag (the next unused one) and sometimes a moderation flag.
    room = world.end_us - (updated1 + _HOUR)
    v2 = np.flatnonzero((rng.random(n) < 0.15) & (room > 0))
    updated2 = updated1[v2] + _HOUR + (rng.random(v2.size) * room[v2]).astype(np.int64)
    created2 = updated2 + _lag_us(rng, v2.size, p_zero=0.2, p_late=0.10)
    tags2 = tags1[v2].copy()
    tags2[:, 6] = _GENERAL_BASE + general_pick[v2, 3]
    nsfw2 = nsfw1[v2] | (rng.random(v2.size) < 0.3)

    idx = np.concatenate([np.arange(n), v2])
    updated = np.concatenate([updated1, updated2])
    created = np.concatenate([created1, created2])
    tags = np.concatenate([tags1, tags2])
    nsfw = np.concatenate([nsfw1, nsfw2])
    order = np.lexsort((updated, idx))
    idx = idx[order]
    return pa.Table.from_arrays(
        [
            pa.array(world.artwork_ids[idx], pa.int64()),
            pa.array(world.user_ids[world.author[idx]], pa.int64()),
            _ts_array(updated[order]),
            _ts_array(created[order]),
            pa.array(STYLES).take(pa.array(world.style[idx])),
            _tag_lists(tags[order]),
            pa.array(nsfw[order], pa.bool_()),
            pa.array(aspect[idx], pa.float32()),
        ],
        schema=ARTWORKS_SCHEMA,
    )


def _missing(world: _World, seed: int) -> np.ndarray:
    """The (sorted) indices of the ~1% of artworks left out of the embedding store."""
    rng = _rng(seed, _S_EMBED, 1)
    n = world.n_artworks
    n_missing = max(1, round(0.01 * n)) if n > 1 else 0
    return np.sort(rng.choice(n, n_missing, replace=False))


def _write_embeddings(world: _World, seed: int, path: Path) -> tuple[tuple[int, ...], int, int]:
    """Write the Lance store, leaving ~1% of artworks out; return (missing ids, rows, version)."""
    import lance  # heavy; only the commands that write or read vectors should pay for it

    n = world.n_artworks
    missing = _missing(world, seed)
    present = np.setdiff1d(np.arange(n), missing, assume_unique=True)
    chunk = 64 * 1024

    def batches() -> Iterator[pa.RecordBatch]:
        for lo in range(0, present.size, chunk):
            idx = present[lo : lo + chunk]
            flat = pa.array(world.vectors[idx].reshape(-1), pa.float32())
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(world.artwork_ids[idx], pa.int64()),
                    pa.FixedSizeListArray.from_arrays(flat, EMBEDDING_DIM),
                ],
                schema=EMBEDDINGS_SCHEMA,
            )

    reader = pa.RecordBatchReader.from_batches(EMBEDDINGS_SCHEMA, batches())
    # An existing store gets a new version rather than being deleted: readers that pinned the
    # old version (pipeline manifests record it) still find it, and the version bump tells
    # them the vectors may have changed.
    mode = "overwrite" if (path / "_versions").is_dir() else "create"
    ds = lance.write_dataset(reader, str(path), schema=EMBEDDINGS_SCHEMA, mode=mode)
    return tuple(int(i) for i in world.artwork_ids[missing]), int(present.size), int(ds.version)


# --------------------------------------------------------------------------- one day


@dataclass(slots=True)
class _Events:
    """Event columns by index (user and artwork are indices into the world)."""

    user: np.ndarray
    art: np.ndarray
    action: np.ndarray
    dwell: np.ndarray  # NaN where null or NaN; `dwell_null` says which
    dwell_null: np.ndarray
    ts: np.ndarray

    @classmethod
    def empty(cls) -> _Events:
        i = np.empty(0, dtype=np.int64)
        return cls(i, i, i, np.empty(0), np.empty(0, dtype=bool), i)

    @classmethod
    def no_dwell(cls, user: np.ndarray, art: np.ndarray, action: int, ts: np.ndarray) -> _Events:
        n = user.size
        return cls(
            user,
            art,
            np.full(n, action, dtype=np.int64),
            np.full(n, np.nan),
            np.ones(n, dtype=bool),
            ts.astype(np.int64, copy=False),
        )

    @classmethod
    def concat(cls, parts: list[_Events]) -> _Events:
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("user", "art", "action", "dwell", "dwell_null", "ts")
            )
        )

    def take(self, idx: np.ndarray) -> _Events:
        return _Events(
            self.user[idx],
            self.art[idx],
            self.action[idx],
            self.dwell[idx],
            self.dwell_null[idx],
            self.ts[idx],
        )


def _views(
    rng: np.random.Generator,
    world: _World,
    user: np.ndarray,
    art: np.ndarray,
    ts: np.ndarray,
    boost: float,
) -> _Events:
    """View events with lognormal dwell (longer for liked styles); a few NaN, a few null."""
    n = user.size
    mu = math.log(4000.0) + 1.0 * world.similarity(user, art) + boost
    dwell = rng.lognormal(mu, 1.0)
    r = rng.random(n)
    dwell[r < 0.002] = np.nan  # a client bug reports NaN: the engines must read it as null
    dwell_null = r > 0.999  # the client did not report it at all
    dwell[dwell_null] = np.nan
    return _Events(user, art, np.full(n, _VIEW, dtype=np.int64), dwell, dwell_null, ts)


def _follow_ups(rng: np.random.Generator, world: _World, views: _Events) -> list[_Events]:
    """Likes and bookmarks after a view of the same artwork by the same user."""
    sim = world.similarity(views.user, views.art)
    known = ~np.isnan(views.dwell)
    watched_us = np.where(known, np.minimum(views.dwell, 30 * 60_000.0) * 1000.0, 5 * _SECOND)
    out = []
    for action, p, tie_p in (
        (_LIKE, 0.03 + 0.15 * sim, 0.02),
        (_BOOKMARK, 0.01 + 0.05 * sim, 0.01),
    ):
        pick = np.flatnonzero(rng.random(views.user.size) < p)
        delay = (watched_us[pick] * rng.uniform(0.2, 1.2, pick.size)).astype(np.int64) + 1
        delay[rng.random(pick.size) < tie_p] = 0  # same microsecond as the view: a tie
        out.append(
            _Events.no_dwell(views.user[pick], views.art[pick], action, views.ts[pick] + delay)
        )
    return out


def _time_order(ts: np.ndarray, *tiebreak: np.ndarray) -> np.ndarray:
    """The permutation sorting rows by (ts, *tiebreak), as `np.lexsort` would.

    Timestamps rarely tie, so sort by time alone and lexsort only the runs of equal
    timestamps: the same answer, several times faster than a full lexsort of a large day.
    """
    order = np.argsort(ts, kind="stable")
    ordered = ts[order]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    if tied.size:
        pos = np.union1d(tied, tied + 1)  # every position inside a run of equal timestamps
        sub = order[pos]
        keys = [k[sub] for k in reversed(tiebreak)]
        order[pos] = sub[np.lexsort((*keys, ts[sub]))]
    return order


def _simulate_day(
    world: _World, seed: int, day_index: int, carry: _Events
) -> tuple[pa.Table, pa.Table, _Events]:
    """One day's events and impressions; events that spill past midnight carry to the next."""
    rng = _rng(seed, _S_DAY, day_index)
    spec = world.spec
    day_start = world.start_us + day_index * _DAY
    day_end = day_start + _DAY
    weekday = (dt.date(1970, 1, 1) + dt.timedelta(days=day_start // _DAY)).weekday()
    volume = (1.2 if weekday >= 5 else 1.0) * rng.lognormal(0.0, 0.05)
    eligible = int(np.searchsorted(world.created_us, day_start))  # artworks existing by then
    n_events = round(spec.events_per_day * volume)
    n_imp = round(spec.impressions_per_day * volume)

    # Organic browsing (outside the ranked feed).
    n_org = round(0.80 * n_events)
    org_user = world.sample_users(rng, n_org, hot_share=spec.hot_user_share)
    org_art = world.sample_artworks(rng, org_user, eligible, 0.55, 0.15)
    org_ts = day_start + _diurnal_offsets(rng, n_org)
    organic = _views(rng, world, org_user, org_art, org_ts, boost=0.0)

    # The ranked feed: impressions, some deliberately on event timestamps.
    imp_user = world.sample_users(rng, n_imp, hot_share=0.01)
    imp_art = world.sample_artworks(rng, imp_user, eligible, 0.35, 0.10)
    imp_ts = day_start + _diurnal_offsets(rng, n_imp)
    perm = rng.permutation(n_imp)
    n_tie = round(0.03 * n_imp) if n_org else 0
    tie_rows, src = perm[:n_tie], rng.integers(0, max(n_org, 1), n_tie)
    imp_user[tie_rows] = org_user[src]  # same user, same microsecond as one of their events
    imp_ts[tie_rows] = org_ts[src]
    late_ok = np.flatnonzero(org_ts < day_end - _POPULARITY_DELAY)
    n_edge = round(0.01 * n_imp) if late_ok.size else 0
    edge_rows = perm[n_tie : n_tie + n_edge]
    src = late_ok[rng.integers(0, max(late_ok.size, 1), n_edge)]
    imp_art[edge_rows] = org_art[src]  # exactly the popularity view's delay after a view
    imp_ts[edge_rows] = org_ts[src] + _POPULARITY_DELAY

    sim = world.similarity(imp_user, imp_art)
    logit = -3.6 + 3.5 * sim + 0.8 * (world.popularity[imp_art] - 0.5)
    clicked = rng.random(n_imp) < 1.0 / (1.0 + np.exp(-logit))
    # A click is logged as a view at the impression's own timestamp (95%: some logs are lost).
    click_rows = np.flatnonzero(clicked & (rng.random(n_imp) < 0.95))
    click_views = _views(
        rng, world, imp_user[click_rows], imp_art[click_rows], imp_ts[click_rows], boost=0.3
    )

    all_views = _Events.concat([organic, click_views])
    parts = [carry, all_views, *_follow_ups(rng, world, all_views)]

    # Likes straight from the grid, with no view logged first.
    n_orphan = round(0.005 * n_events)
    u = world.sample_users(rng, n_orphan, hot_share=spec.hot_user_share)
    a = world.sample_artworks(rng, u, eligible, 0.55, 0.15)
    parts.append(_Events.no_dwell(u, a, _LIKE, day_start + _diurnal_offsets(rng, n_orphan)))
    # Remixes: "generate similar" from an existing artwork.
    n_gen = round(0.035 * n_events)
    u = world.sample_users(rng, n_gen, hot_share=spec.hot_user_share)
    a = world.sample_artworks(rng, u, eligible, 0.7, 0.2)
    parts.append(_Events.no_dwell(u, a, _GENERATE, day_start + _diurnal_offsets(rng, n_gen)))
    # New artworks appear with their author's generate event at the creation time.
    born = np.flatnonzero((world.created_us >= day_start) & (world.created_us < day_end))
    parts.append(_Events.no_dwell(world.author[born], born, _GENERATE, world.created_us[born]))

    events = _Events.concat(parts)
    spill = events.ts >= day_end
    next_carry = events.take(np.flatnonzero(spill))
    events = events.take(np.flatnonzero(~spill))
    order = _time_order(events.ts, events.user, events.art, events.action)
    events = events.take(order)

    ev_table = pa.Table.from_arrays(
        [
            pa.array(world.user_ids[events.user], pa.int64()),
            pa.array(world.artwork_ids[events.art], pa.int64()),
            pa.array(ACTIONS).take(pa.array(events.action)),
            pa.array(events.dwell, pa.float64(), mask=events.dwell_null),
            _ts_array(events.ts),
        ],
        schema=EVENTS_SCHEMA,
    )
    order = _time_order(imp_ts, imp_user, imp_art)
    im_table = pa.Table.from_arrays(
        [
            pa.array(world.user_ids[imp_user[order]], pa.int64()),
            pa.array(world.artwork_ids[imp_art[order]], pa.int64()),
            _ts_array(imp_ts[order]),
            pa.array(clicked[order], pa.bool_()),
        ],
        schema=IMPRESSIONS_SCHEMA,
    )
    return ev_table, im_table, next_carry
