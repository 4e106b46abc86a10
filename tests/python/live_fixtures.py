"""Models for the live tests, built locally (no hub): SmolLM2-135M-Instruct from the GGUF that
`scripts/setup.sh --models` fetched (real weights), and tiny randomly initialised LLaVA-OneVision and Qwen2.5-VL
models saved to folders, whose tokenizer is SmolLM2's (from the same GGUF) plus the video special tokens."""
from __future__ import annotations

import torch

TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096)
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for c in message['content'] %}"
          "{% if c['type'] == 'video' %}VIDEO\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from vidkv.models import locate_smollm2_gguf
    path = locate_smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)


def save_tiny_llava_onevision(folder, tok):
    """A 2-layer LLaVA-OneVision (SigLIP 56x56, patch 14: 4x4 patches pooled to 2x2 per frame), random weights."""
    from transformers import (LlamaConfig, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor,
                              SiglipVisionConfig)
    tok.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    text = LlamaConfig(vocab_size=len(tok), head_dim=16, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       **TINY_TEXT)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=56, patch_size=14)
    cfg = LlavaOnevisionConfig(text_config=text, vision_config=vision, vision_feature_layer=-1,
                               vision_feature_select_strategy="full",
                               image_token_index=tok.convert_tokens_to_ids("<image>"),
                               video_token_index=tok.convert_tokens_to_ids("<video>"))
    cfg.vidkv_label = "tiny random LLaVA-OneVision built by the tests (untrained)"
    torch.manual_seed(0)
    LlavaOnevisionForConditionalGeneration(cfg).save_pretrained(folder)
    proc = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": 56, "width": 56}, image_grid_pinpoints=[[56, 56]]),
        video_processor=LlavaOnevisionVideoProcessor(size={"height": 56, "width": 56}), tokenizer=tok,
        num_image_tokens=16, vision_feature_select_strategy="full", chat_template=CHATML.replace("VIDEO", "<video>"))
    proc.save_pretrained(folder)
    return proc


def save_tiny_qwen2_5_vl(folder, tok):
    """A 2-layer Qwen2.5-VL (patch 14, merge 2, temporal patch 2), random weights."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)
    tok.add_special_tokens({"additional_special_tokens": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                                          "<|video_pad|>"]})
    ids = tok.convert_tokens_to_ids
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         **TINY_TEXT),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    cfg.vidkv_label = "tiny random Qwen2.5-VL built by the tests (untrained)"
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(cfg).save_pretrained(folder)
    px = 56 * 56
    proc = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=px, max_pixels=4 * px),
        video_processor=Qwen2VLVideoProcessor(min_pixels=px, max_pixels=4 * px, do_sample_frames=False),
        tokenizer=tok, chat_template=CHATML.replace("VIDEO", "<|vision_start|><|video_pad|><|vision_end|>"))
    proc.save_pretrained(folder)
    return proc
