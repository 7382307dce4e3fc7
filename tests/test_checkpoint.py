"""Checkpoint files on their own (no Ray): round trip, atomic writes, damaged files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from ray_relu import checkpoint as ck
from ray_relu import storage


def sample(**changes) -> ck.Checkpoint:
    history = pa.table({"iteration": [0, 1, 2], "loss": [0.5, 0.25, 0.125]})
    fields = dict(iteration=2, w=np.array([1.0, -2.5, 3e-300]), history=history,
                  fingerprint={"seed": 3, "codec": {"id": "qsgd", "levels": 2}},
                  converged=True, next_w=np.array([0.5, 0.25, -1.0]),
                  messages=[b"abc", b"", b"\x00\xff" * 5], replica_divergence=1.5e-17,
                  restarts=4, residuals=np.array([[1e-3, -2.0, 0.0], [0.0, 0.0, 5e-310]]),
                  downlink_residual=np.array([0.25, 0.0, -7.0]))
    fields.update(changes)
    return ck.Checkpoint(**fields)


def assert_same(a: ck.Checkpoint, b: ck.Checkpoint) -> None:
    assert (a.iteration, a.converged, a.replica_divergence, a.restarts, a.fingerprint) == \
        (b.iteration, b.converged, b.replica_divergence, b.restarts, b.fingerprint)
    np.testing.assert_array_equal(a.w, b.w)
    assert a.history.equals(b.history)
    assert a.messages == b.messages
    for name in ("next_w", "residuals", "downlink_residual"):
        if getattr(a, name) is None:
            assert getattr(b, name) is None
        else:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("changes", [{}, dict(messages=None),
                                     dict(next_w=None, converged=False, restarts=0,
                                          residuals=None, downlink_residual=None)])
def test_round_trip(tmp_path, changes):
    path = tmp_path / "ck.npz"
    original = sample(**changes)
    ck.save(path, original)
    assert_same(ck.load(path), original)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]    # no temporary left over


def test_saving_again_replaces_the_file(tmp_path):
    path = tmp_path / "ck.npz"
    ck.save(path, sample())
    ck.save(path, sample(iteration=7, restarts=1))
    loaded = ck.load(path)
    assert (loaded.iteration, loaded.restarts) == (7, 1)


def rewrite(path, **arrays) -> None:
    """Replace some arrays of a saved checkpoint, keeping the others."""
    with np.load(path) as z:
        content = {name: z[name] for name in z.files}
    content.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **content)


def test_inconsistent_message_sizes_are_rejected(tmp_path):
    path = tmp_path / "ck.npz"
    ck.save(path, sample())
    rewrite(path, message_sizes=np.array([3, 0, 9]))
    with pytest.raises(ck.CheckpointError, match="message sizes do not add up"):
        ck.load(path)


def test_other_format_versions_are_rejected(tmp_path):
    path = tmp_path / "ck.npz"
    ck.save(path, sample())
    meta = {"format": ck.FORMAT_VERSION + 1, "iteration": 2}
    rewrite(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(ck.CheckpointError, match=f"format {ck.FORMAT_VERSION + 1}"):
        ck.load(path)


def test_missing_and_damaged_files(tmp_path):
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.load(tmp_path / "nothing.npz")
    path = tmp_path / "ck.npz"
    ck.save(path, sample())
    good = path.read_bytes()
    path.write_bytes(good[:len(good) // 2])
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.load(path)
    with zipfile.ZipFile(path, "w") as z:                      # a zip, but no checkpoint
        z.writestr("other.npy", b"")
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.load(path)


def test_check_matches_names_every_difference(tmp_path):
    saved = sample()
    ck.check_matches(saved, {"seed": 3, "codec": {"levels": 2, "id": "qsgd"}}, "p")
    with pytest.raises(ck.CheckpointError,
                       match=r"codec: .*levels.*; mode: checkpoint has None, this run has "
                             r"'master'; seed: checkpoint has 3, this run has 4"):
        ck.check_matches(saved, {"seed": 4, "codec": {"id": "qsgd", "levels": 3},
                                 "mode": "master"}, "p")


def test_file_uri_and_path_name_the_same_checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    ck.save(f"file://{path}", sample())
    assert_same(ck.load(path), sample())
    ck.save(path, sample(iteration=9))
    assert ck.load(path.as_uri()).iteration == 9


def test_a_filesystem_without_rename_gets_the_whole_object():
    """pyarrow's in-memory ``mock://`` filesystem stands in for an object store."""
    fs, where = storage.resolve_location("mock:///bucket/run/ck.npz")
    assert not isinstance(fs, pafs.LocalFileSystem) and where == "bucket/run/ck.npz"
    storage.write_bytes(fs, where, b"first")
    storage.write_bytes(fs, where, b"second, longer")
    assert storage.read_bytes(fs, where) == b"second, longer"
    assert [i.path for i in fs.get_file_info(pafs.FileSelector("bucket", recursive=True))
            if i.type == pafs.FileType.File] == ["bucket/run/ck.npz"]
    with pytest.raises(FileNotFoundError, match="mock://bucket/run/other"):
        storage.read_bytes(fs, "bucket/run/other")


def test_unresolvable_uris_say_what_is_allowed(tmp_path):
    with pytest.raises(ValueError, match="allowed: a local path, file://, s3://"):
        ck.save("nope://bucket/ck.npz", sample())
    with pytest.raises(ValueError, match="cannot resolve"):
        ck.load("nope://bucket/ck.npz")
