"""tir make-noise: RDE's generator bit for bit, .npy import/export, the loader and `tir info`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from tir.cli import cli
from tir.errors import StaleArtifactError, UserError
from tir.knowledge.noise import load_noise, rde_sources
from tir.pipeline import store
from tir.pipeline.info import describe


def rde_written_out(n: int, rate: float, seed: int) -> np.ndarray:
    """RDE's noisy-correspondence generator, as in its data code."""
    np.random.seed(seed)
    inx = np.random.permutation(n)
    c = inx[0:int(rate * n)]
    s = c.copy()
    np.random.shuffle(s)
    a = np.arange(n)
    a[c] = s
    return a


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 68126])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_generator_matches_rde(n, rate):
    for seed in (0, 1, 123):
        ours = rde_sources(n, rate, seed)
        assert ours.dtype == np.int64
        assert np.array_equal(ours, rde_written_out(n, rate, seed))
        assert np.array_equal(np.sort(ours), np.arange(n))
        if rate == 0.0:
            assert np.array_equal(ours, np.arange(n))


def test_rate_one_shuffles_everything_but_fixed_points_stay_clean():
    sources = rde_sources(1000, 1.0, 1)
    fixed = int((sources == np.arange(1000)).sum())
    assert 0 < fixed < 10  # about one pair lands on itself; is_noisy must be False there


def write_manifest(root, n_train: int = 50):
    folder = root / "CUHK-PEDES"
    folder.mkdir(parents=True, exist_ok=True)
    raw = root / "raw.json"
    raw.write_text("{}")
    splits = ["train"] * n_train + ["test"] * 5
    pairs = list(range(n_train)) + list(range(5))
    table = pa.table({"pair_index": pa.array(pairs, pa.int64()), "split": pa.array(splits).dictionary_encode()})
    store.write_table(table, folder / "manifest.parquet", stage="prepare", options={}, inputs={"raw": raw})
    return folder


def test_stage_writes_exports_imports_and_describes(tmp_path):
    folder = write_manifest(tmp_path)
    runner = CliRunner()
    npy = tmp_path / "noise.npy"
    args = ["make-noise", "cuhk-pedes", "--manifests", str(tmp_path), "--rate", "0.5", "--seed", "1"]
    result = runner.invoke(cli, args + ["--to-npy", str(npy)])
    assert result.exit_code == 0, result.output
    path = folder / "noise" / "0.5-seed1.parquet"
    expected = rde_written_out(50, 0.5, 1)
    table = store.read_table(path)
    assert table.column_names == ["pair_index", "caption_source", "is_noisy"]
    assert table.column("caption_source").type == pa.int64()
    assert np.array_equal(table.column("caption_source").to_numpy(), expected)
    assert np.array_equal(table.column("is_noisy").to_numpy(), expected != np.arange(50))
    exported = np.load(npy)
    assert exported.dtype == np.int64 and np.array_equal(exported, expected)
    assert "up to date" in runner.invoke(cli, args).output

    sources, noisy = load_noise(path, folder / "manifest.parquet")
    assert np.array_equal(sources, expected) and np.array_equal(noisy, expected != np.arange(50))
    sources, noisy = load_noise(npy, folder / "manifest.parquet")
    assert np.array_equal(sources, expected)

    text = describe(path)
    assert f"noisy: {int((expected != np.arange(50)).sum())}" in text and "rate 0.5   seed 1" in text

    other = tmp_path / "other.npy"
    np.save(other, np.roll(np.arange(50), 1))
    result = runner.invoke(cli, ["make-noise", "CUHK-PEDES", "--manifests", str(tmp_path), "--rate", "1", "--seed", "7",
                                 "--from-npy", str(other)])
    assert result.exit_code == 0, result.output
    assert "50 of 50 train pairs noisy" in result.output and "differs from RDE's generator" in result.output
    assert "an imported .npy (not RDE's generator" in describe(folder / "noise" / "1-seed7.parquet")


@pytest.mark.parametrize("array, message", [
    (np.arange(49), "holds 49 entries"),
    (np.arange(50).reshape(5, 10), "1-D integer array"),
    (np.arange(50, dtype=float), "1-D integer array"),
    (np.r_[np.arange(49), 3], "not a permutation"),
    (np.r_[np.arange(49), 50], "not a permutation"),
    (np.r_[-1, np.arange(1, 50)], "not a permutation"),
])
def test_from_npy_is_validated(tmp_path, array, message):
    write_manifest(tmp_path)
    bad = tmp_path / "bad.npy"
    np.save(bad, array)
    result = CliRunner().invoke(cli, ["make-noise", "CUHK-PEDES", "--manifests", str(tmp_path), "--rate", "0.2",
                                      "--seed", "1", "--from-npy", str(bad)])
    assert result.exit_code == 2 and message in result.output and str(bad) in result.output
    assert result.output.count("\n") == 1


def test_unreadable_npy_and_stale_manifest(tmp_path):
    folder = write_manifest(tmp_path)
    junk = tmp_path / "junk.npy"
    junk.write_text("not numpy")
    with pytest.raises(UserError, match="not a readable .npy"):
        load_noise(junk, folder / "manifest.parquet")
    result = CliRunner().invoke(cli, ["make-noise", "CUHK-PEDES", "--manifests", str(tmp_path), "--rate", "0.2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    write_manifest(tmp_path, n_train=60)
    with pytest.raises(StaleArtifactError):
        load_noise(folder / "noise" / "0.2-seed1.parquet", folder / "manifest.parquet")


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    folder = write_manifest(tmp_path)
    (folder / "noise").mkdir()
    stale = folder / "noise" / ".0.2-seed1.parquet.k1ll3d.tmp"
    stale.write_bytes(bytes(100))
    kept = folder / "noise" / ".0.5-seed1.parquet.other.tmp"  # another output's: maybe being written now
    kept.write_bytes(b"x")
    result = CliRunner().invoke(cli, ["make-noise", "CUHK-PEDES", "--manifests", str(tmp_path), "--rate", "0.2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and kept.exists()
