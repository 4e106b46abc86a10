"""Progress of `vidkv live` and `vidkv record` on stderr: tqdm bars on a terminal, plain lines otherwise (a log
file or CI gets one line when a run starts and one when a generation ends, never carriage returns).

    runs = RunProgress(len(plan_runs), "live")
    for run in plan_runs:
        runs.start(run["name"])
        model.generate(..., streamer=TokenProgress(f"{run['name']} greedy", max_new_tokens))
        runs.done()
"""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm
from transformers.generation.streamers import BaseStreamer

__all__ = ["RunProgress", "TokenProgress", "interactive"]


def interactive(stream=None) -> bool:
    """True when `stream` (default stderr) is a terminal: bars; False: plain lines."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class TokenProgress(BaseStreamer):
    """A transformers streamer (`generate(..., streamer=...)`) counting generated tokens: one bar step per decode
    step (all rows of a batch together); generate's first `put` (the prompt) is not counted. `total`: the
    max_new_tokens the bar runs to. Plain mode prints "<desc>: N tokens in S s" when generation ends."""

    def __init__(self, desc: str, total: int, stream=None):
        self.desc, self.total, self.stream = desc, int(total), stream or sys.stderr
        self.tokens = 0
        self._prompt = True
        self._t0 = time.time()
        self._bar = tqdm(total=self.total, desc=desc, unit="tok", file=self.stream, leave=False) \
            if interactive(self.stream) else None

    def put(self, value) -> None:
        if self._prompt:
            self._prompt = False
            return
        self.tokens += 1
        if self._bar is not None:
            self._bar.update(1)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            print(f"  {self.desc}: {self.tokens} tokens in {time.time() - self._t0:.1f} s", file=self.stream, flush=True)


class RunProgress:
    """Progress over the runs of a command: a bar on a terminal, "[<name>] run i/n: <run>" lines otherwise."""

    def __init__(self, total: int, name: str, stream=None):
        self.total, self.name, self.stream = int(total), name, stream or sys.stderr
        self.index = 0
        self._bar = tqdm(total=self.total, desc=name, unit="run", file=self.stream) if interactive(self.stream) else None

    def start(self, run: str) -> None:
        self.index += 1
        if self._bar is not None:
            self._bar.set_postfix_str(run)
        else:
            print(f"[{self.name}] run {self.index}/{self.total}: {run}", file=self.stream, flush=True)

    def write(self, line: str) -> None:
        """A result line that does not break the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if self.index >= self.total:
                self._bar.close()
