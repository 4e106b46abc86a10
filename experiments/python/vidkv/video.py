"""Decoding video frames for the video-language models (LLaVA-OneVision, Qwen2.5-VL) with OpenCV.

    frames = read_frames("vtest.avi", count=8)     # uint8 [8, height, width, 3], RGB, uniformly spaced
    default_clip()                                 # vtest.avi from Debian's opencv-doc, fetched by setup.sh --models

Errors (VideoError) name the file: missing, not decodable, fewer frames than asked for.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["VideoError", "read_frames", "video_cache_dir", "default_clip"]


class VideoError(RuntimeError):
    """A video file that cannot be used: missing, undecodable, too short."""


def video_cache_dir() -> Path:
    """Where setup.sh --models extracts the opencv-doc sample clips ($VIDKV_VIDEO_CACHE or ~/.cache/vidkv/videos)."""
    return Path(os.environ.get("VIDKV_VIDEO_CACHE", Path.home() / ".cache" / "vidkv" / "videos"))


def default_clip(name: str = "vtest.avi") -> Path:
    """Path of a sample clip of Debian's opencv-doc package (vtest.avi: 768x576, 795 frames, pedestrians)."""
    p = video_cache_dir() / name
    if not p.is_file():
        raise VideoError(f"sample clip {p} not found: run `scripts/setup.sh --models` (it extracts the sample "
                         "videos of Debian's opencv-doc package there)")
    return p


def read_frames(path: str | Path, count: int) -> np.ndarray:
    """`count` frames spread uniformly over the clip (first and last included when count > 1), as uint8
    [count, height, width, 3] RGB."""
    import cv2

    path = Path(path)
    if count < 1:
        raise VideoError(f"{path}: frames must be >= 1, got {count}")
    if not path.is_file():
        raise VideoError(f"video {path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"video {path}: OpenCV cannot open it (not a video, or an unsupported codec)")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise VideoError(f"video {path}: no decodable frames")
        if total < count:
            raise VideoError(f"video {path}: {total} frames, fewer than the {count} asked for")
        wanted = np.linspace(0, total - 1, count).round().astype(int) if count > 1 else np.array([0])
        frames = []
        for index in wanted:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = cap.read()
            if not ok or frame is None:
                raise VideoError(f"video {path}: frame {index} of {total} cannot be decoded")
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        return np.stack(frames)
    finally:
        cap.release()
