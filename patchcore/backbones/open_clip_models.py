"""open_clip ``RN50``, ``RN50x4``, ``RN50x16``, ``RN101`` with OpenAI's CLIP weights (visual tower)."""

from __future__ import annotations

import logging
import urllib.parse
import zipfile
from pathlib import Path

import torch
from torch import nn

from patchcore.backbones.base import Adapter, LoadedBackbone, WeightsStatus
from patchcore.backbones.network import reachable, unavailable
from patchcore.config import BackboneSettings
from patchcore.errors import UsageError

OPEN_CLIP_MODELS = ("RN50", "RN50x4", "RN50x16", "RN101")
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _cached(name: str) -> tuple[Path | None, str]:
    """The OpenAI CLIP weights file if a library cache already holds it, and where we looked."""
    import huggingface_hub
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, "openai")
    repo = cfg["hf_hub"].rstrip("/")
    looked = []
    for filename in _HF_FILES:
        hit = huggingface_hub.try_to_load_from_cache(repo, filename)
        looked.append(f"{huggingface_hub.constants.HF_HUB_CACHE}/models--{repo.replace('/', '--')}/.../{filename}")
        if isinstance(hit, str):
            return Path(hit), ", ".join(looked)
    url_file = Path("~/.cache/clip").expanduser() / Path(urllib.parse.urlsplit(cfg["url"]).path).name
    looked.append(str(url_file))
    return (url_file if url_file.is_file() else None), ", ".join(looked)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in zf.namelist())


def _clip_from_file(settings: BackboneSettings, name: str, path: Path) -> nn.Module:
    """OpenAI's own .pt files are TorchScript archives; open_clip's (Hugging Face) files are state dicts."""
    import open_clip

    try:
        if _is_torchscript(path):
            from open_clip.model import build_model_from_openai_state_dict

            state = torch.jit.load(str(path), map_location="cpu").state_dict()
            # attn_mask is the text tower's causal mask, which open_clip builds itself; scripted copies may carry it.
            state = {k: v for k, v in state.items() if k != "attn_mask"}
            return build_model_from_openai_state_dict(state).float()
        return open_clip.create_model(name, pretrained=str(path), force_quick_gelu=True, require_pretrained=True)
    except Exception as exc:  # torch and open_clip raise many types for files that are not CLIP weights
        first = (str(exc).splitlines() or [exc.__class__.__name__])[0][:160]
        raise UsageError(
            f"backbones.{settings.name}.weights: {path} is not a CLIP {name} weights file ({exc.__class__.__name__}: {first}); use the file made for it"
        ) from None


class OpenClip(Adapter):
    library = "open_clip"
    models = OPEN_CLIP_MODELS

    def architecture(self, name: str, device: str = "cpu") -> nn.Module:
        import open_clip

        # open_clip logs a warning for every untrained model; here untrained is the point.
        logging.disable(logging.WARNING)
        try:
            with torch.device(device):
                return open_clip.create_model(name, pretrained=None, force_quick_gelu=True, device=device).visual
        finally:
            logging.disable(logging.NOTSET)

    def pretrained_status(self, name: str) -> WeightsStatus:
        path, looked = _cached(name)
        return WeightsStatus("open_clip openai", path is not None, str(path) if path else looked)

    def _checked(self, settings: BackboneSettings, name: str, model: object) -> nn.Module:
        """A file built for another model (RN101 weights under an RN50 entry) must not load as if it fit."""
        expected = {k: tuple(v.shape) for k, v in self.architecture(name, "meta").state_dict().items()}
        actual = {k: tuple(v.shape) for k, v in model.state_dict().items()} if isinstance(model, nn.Module) else {}
        if not isinstance(model, nn.Module) or expected != actual:
            raise UsageError(
                f"backbones.{settings.name}.weights: {settings.weights} holds weights of another architecture than {settings.arch}; use the file made for {name}"
            )
        return model

    def pretrained(self, settings: BackboneSettings, name: str, status: WeightsStatus) -> LoadedBackbone:
        import open_clip

        if status.available:
            clip = _clip_from_file(settings, name, Path(status.looked_at))
        else:
            url = open_clip.get_pretrained_cfg(name, "openai")["url"]
            if not reachable("https://huggingface.co") and not reachable(url):
                raise unavailable(settings, status, url)
            clip = open_clip.create_model(name, pretrained="openai", require_pretrained=True)
        return LoadedBackbone(self._checked(settings, name, clip.visual), f"CLIP openai, open_clip {name}")

    def from_file(self, settings: BackboneSettings, name: str, path: Path) -> LoadedBackbone:
        clip = _clip_from_file(settings, name, path)
        return LoadedBackbone(self._checked(settings, name, clip.visual), f"file {settings.weights}")
