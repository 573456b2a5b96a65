"""The one atomic writer and the JSON helpers every file goes through."""

import errno
import json
import math
import os
import pickle
import stat

import pytest

from mardini_bench.io import (DamagedFileError, NoSpaceError, all_or_nothing, append_jsonl, atomic_file, atomic_write,
                              load_json, read_jsonl, write_json, write_jsonl, write_text)


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temp file left behind
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]


def test_a_full_disk_names_the_folder_and_leaves_the_old_file(tmp_path):
    path = tmp_path / "last.pt"
    path.write_text("old")

    def full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(NoSpaceError) as err:
        atomic_write(path, full)
    assert str(err.value).startswith(f"{tmp_path}: no space left on the device") and "writing last.pt" in str(err.value)
    assert err.value.errno == errno.ENOSPC and isinstance(pickle.loads(pickle.dumps(err.value)), NoSpaceError)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["last.pt"]
    with pytest.raises(OSError) as other:  # other faults pass through as they are
        atomic_write(path, lambda f: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    assert not isinstance(other.value, NoSpaceError) and os.listdir(tmp_path) == ["last.pt"]


def test_append_jsonl_on_a_full_disk_names_the_folder(tmp_path, monkeypatch):
    class Full:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr("builtins.open", lambda *a, **k: Full())
    with pytest.raises(NoSpaceError, match="writing log.jsonl"):
        append_jsonl(tmp_path / "log.jsonl", {"step": 1})


def test_atomic_file_keeps_previous_and_gets_plain_file_mode(tmp_path):
    path, previous = tmp_path / "last.pt", tmp_path / "prev.pt"
    path.write_text("first")
    with atomic_file(path, previous=previous) as tmp:
        tmp.write_text("second")
    assert path.read_text() == "second" and previous.read_text() == "first"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_write_json_writes_non_finite_numbers_as_null(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"loss": math.nan, "values": [1.0, math.inf]})
    assert json.loads(path.read_text()) == {"loss": None, "values": [1.0, None]}


def test_load_json_names_the_file_and_the_fault(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model": ')
    with pytest.raises(DamagedFileError, match=r"config\.json: damaged JSON"):
        load_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(DamagedFileError, match="expected a JSON object, got array"):
        load_json(path)
    with pytest.raises(FileNotFoundError):
        load_json(tmp_path / "absent.json")


def test_jsonl_keeps_key_order_and_skips_a_partial_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    write_jsonl(path, [{"step": 1, "loss": 0.5}, {"step": 2, "loss": math.nan}])
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')  # a write cut short
    assert read_jsonl(path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": None}]
    assert path.read_text().startswith('{"step": 1')


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def test_all_or_nothing_keeps_every_write_of_a_block_or_none(tmp_path):
    write_text(tmp_path / "report.md", "old report")
    before = _tree(tmp_path)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C half-way counts as a failure too
        with all_or_nothing():
            write_text(tmp_path / "report.md", "new, first")
            write_text(tmp_path / "report.md", "new, second")  # the first version kept is the one before the block
            with all_or_nothing():  # a nested block joins the outer one
                write_text(tmp_path / "plots" / "deep" / "a.png", "png")
            raise KeyboardInterrupt
    assert _tree(tmp_path) == before  # restored, new files and folders gone, no hidden copies left
    with all_or_nothing():
        write_text(tmp_path / "report.md", "new")
        write_text(tmp_path / "plots" / "a.png", "png")
    assert _tree(tmp_path) == {"plots": None, "plots/a.png": b"png", "report.md": b"new"}


def test_a_line_that_is_not_utf8_costs_only_that_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": "\xff"}\n{"step": 3}\n')
    assert read_jsonl(path) == [{"step": 1}, {"step": 3}]
