"""Model inputs for a prompt, and the trace's per-token metadata taken from the processor's own token layout.

    inputs = build_inputs(loaded, text="What do the people do?", question="What do the people do?", frames=frames)
    inputs.model_inputs      # dict for model(...) / model.generate(...): input_ids [1, T] int64, pixel values, ...
    inputs.modality          # [T] uint8: 0 system/template text, 1 visual, 2 query text (the question span)
    inputs.frame, inputs.patch   # [T] int32 and [T, 2] int16, -1 where not visual

The prompt is the model's chat template around one user message (the video first when there is one, then the
text). Visual tokens are exactly the positions where the processor put its video token id; their frame and patch
row/column follow the processor's grid (never a hard-coded offset):
  * LLaVA-OneVision: the processor emits frames x p x p tokens + 1, p = ceil(sqrt(num_image_tokens) / 2) (each
    frame's patch grid pooled 2x2, frame-major, row-major), then one image_newline token closing the video:
    visual, frame = the last frame, patch (p - 1, p), where LLaVA puts a row's newline (one column past its end);
  * Qwen2.5-VL: video_grid_thw = (t, h, w) patches; tokens are t x (h / m) x (w / m) merged patches, m =
    merge_size, temporal-major, row-major; the frame index is the temporal grid index (each covers
    temporal_patch_size decoded frames).
The question span (modality 2) is located by character offsets: the rendered prompt with the video token
expanded as the processor does is re-tokenized with offsets, and the ids must equal the processor's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vidkv.models import KIND_LLAVA_ONEVISION, KIND_QWEN2_5_VL, KIND_TEXT, LoadedModel

__all__ = ["PromptError", "PromptInputs", "build_inputs",
           "MOD_CONTEXT", "MOD_VISUAL", "MOD_QUERY", "MOD_GENERATED"]

MOD_CONTEXT, MOD_VISUAL, MOD_QUERY, MOD_GENERATED = 0, 1, 2, 3


class PromptError(ValueError):
    """A prompt that cannot be laid out: question not in the text, token layout not reproducible, ..."""


@dataclass
class PromptInputs:
    model_inputs: dict
    ids: list
    prompt_text: str
    modality: np.ndarray
    frame: np.ndarray
    patch: np.ndarray
    video_grid: dict | None  # the processor's grid of the video (frames, rows, columns, tokens), None without one

    @property
    def length(self) -> int:
        return len(self.ids)


def _messages(kind: str, text: str, has_video: bool, system: str | None = None):
    head = [] if system is None else [{"role": "system", "content": system if kind == KIND_TEXT
                                       else [{"type": "text", "text": system}]}]
    if kind == KIND_TEXT:
        return head + [{"role": "user", "content": text}]
    content = ([{"type": "video"}] if has_video else []) + [{"type": "text", "text": text}]
    return head + [{"role": "user", "content": content}]


def _render(loaded: LoadedModel, text: str, has_video: bool, chat: bool, system: str | None) -> str:
    if not chat:
        if has_video:
            token = loaded.processor.video_token
            return (f"<|vision_start|>{token}<|vision_end|>" if loaded.kind == KIND_QWEN2_5_VL else token) + text
        return text
    target = loaded.processor
    if getattr(target, "chat_template", None) is None:
        raise PromptError(f"model {loaded.model_id}: its processor/tokenizer has no chat template; set chat: false")
    return target.apply_chat_template(_messages(loaded.kind, text, has_video, system), add_generation_prompt=True,
                                      tokenize=False)


def _tokenize_with_offsets(tok, text: str, want: list[int]):
    for special in (False, True):
        enc = tok(text, add_special_tokens=special, return_offsets_mapping=True)
        if list(enc["input_ids"]) == want:
            return enc["offset_mapping"]
    raise PromptError("re-tokenizing the rendered prompt does not reproduce the processor's token ids, so the "
                      "question span cannot be located by character offsets")


def build_inputs(loaded: LoadedModel, text: str, question: str | None = None, frames: np.ndarray | None = None,
                 chat: bool = True, system: str | None = None) -> PromptInputs:
    """Inputs and token metadata for one user message `text` (optionally with a video: uint8 [F, H, W, 3] RGB).
    `question`: a substring of `text` marked as query text (modality 2); None: no query-text tokens.
    `system`: a system message (default: whatever the chat template adds by itself)."""
    import torch

    if question is not None:
        if not question.strip():
            raise PromptError("question: empty; give a part of the prompt text, or leave it out")
        if question not in text:
            raise PromptError(f"question {question!r} is not part of the prompt text {text!r}")
    if frames is not None and loaded.kind == KIND_TEXT:
        raise PromptError(f"model {loaded.model_id} is a text model ({loaded.family}); it takes no video")
    prompt = _render(loaded, text, frames is not None, chat, system)
    tok = loaded.tokenizer
    if loaded.kind == KIND_TEXT:
        enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
        if chat and hasattr(tok, "apply_chat_template"):
            ref = tok.apply_chat_template(_messages(loaded.kind, text, False, system), add_generation_prompt=True,
                                          tokenize=True, return_dict=True)["input_ids"]
            if list(ref) != enc["input_ids"][0].tolist():
                raise PromptError("tokenizing the rendered chat template does not reproduce apply_chat_template's ids")
        model_inputs = {"input_ids": enc["input_ids"], "attention_mask": torch.ones_like(enc["input_ids"])}
    else:
        kwargs = {"text": [prompt], "return_tensors": "pt"}
        if frames is not None:
            kwargs["videos"] = [frames]
        model_inputs = dict(loaded.processor(**kwargs))
    ids = model_inputs["input_ids"][0].tolist()
    T = len(ids)
    modality = np.full(T, MOD_CONTEXT, dtype=np.uint8)
    frame = np.full(T, -1, dtype=np.int32)
    patch = np.full((T, 2), -1, dtype=np.int16)
    grid = None
    expanded = prompt
    if frames is not None:
        vid = loaded.processor.video_token_id
        visual = [i for i, t in enumerate(ids) if t == vid]
        grid = _video_grid(loaded, model_inputs, len(visual))
        for n, i in enumerate(visual):
            modality[i] = MOD_VISUAL
            per_frame = grid["rows"] * grid["columns"]
            if n < grid["frames"] * per_frame:
                frame[i] = n // per_frame
                patch[i] = ((n % per_frame) // grid["columns"], n % grid["columns"])
            else:  # LLaVA-OneVision's image_newline closing the video: just after the last patch of the last row
                frame[i] = grid["frames"] - 1
                patch[i] = (grid["rows"] - 1, grid["columns"])
        token = loaded.processor.video_token
        expanded = prompt.replace(token, token * len(visual), 1)
    if question is not None:
        offsets = _tokenize_with_offsets(tok, expanded, ids)
        q_start = expanded.rfind(question)
        q_end = q_start + len(question)
        for i, (a, b) in enumerate(offsets):
            if a < q_end and b > q_start and modality[i] != MOD_VISUAL:
                modality[i] = MOD_QUERY
        if not (modality == MOD_QUERY).any():
            raise PromptError(f"question {question!r}: no token of the rendered prompt covers it")
    if "pixel_values_videos" in model_inputs and model_inputs["pixel_values_videos"] is not None:
        model_inputs["pixel_values_videos"] = model_inputs["pixel_values_videos"].to(loaded.model.dtype)
    return PromptInputs(model_inputs=model_inputs, ids=ids, prompt_text=prompt, modality=modality, frame=frame,
                        patch=patch, video_grid=grid)


def _video_grid(loaded: LoadedModel, model_inputs: dict, visual_count: int) -> dict:
    """The processor's video grid, checked against the number of video tokens it emitted."""
    proc = loaded.processor
    if loaded.kind == KIND_LLAVA_ONEVISION:
        frames = int(model_inputs["pixel_values_videos"].shape[1])
        side = math.ceil(int(math.sqrt(proc.num_image_tokens)) / 2)
        expected = frames * side * side + 1  # + the image_newline token closing the video
        grid = {"frames": frames, "rows": side, "columns": side, "tokens": expected, "newline_tokens": 1}
    elif loaded.kind == KIND_QWEN2_5_VL:
        t, h, w = (int(x) for x in model_inputs["video_grid_thw"][0])
        m = int(proc.video_processor.merge_size)
        expected = t * (h // m) * (w // m)
        grid = {"frames": t, "rows": h // m, "columns": w // m, "tokens": expected, "newline_tokens": 0,
                "temporal_patch_size": int(proc.video_processor.temporal_patch_size)}
    else:
        raise PromptError(f"model {loaded.model_id}: no video token layout for {loaded.family}")
    if visual_count != expected:
        raise PromptError(f"model {loaded.model_id}: the processor emitted {visual_count} video tokens, its grid "
                          f"{grid} implies {expected}")
    return grid
