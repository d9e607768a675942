"""Capture loop throughput: the pipelined stream (recon.runtime.stream) against a sequential loop over
the same frames of a video file, and each stage alone.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_stream.py --frames 60 --threads 1

Stages: capture (OpenCV decoding the MJPG file), infer (Reconstructor.batch on one frame: preprocessing,
both networks, marching cubes) and consume (what `recon-cli stream --out` does per frame: Result.save
of a .glb, plus the preview with --preview). Sequential: the three one after the other per frame.
Pipelined: Reconstructor.stream over the file with the same consumer. Target: pipelined fps >= 0.9x
the fps of the slowest stage alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chair_photo.jpg"


def drawn(i: int, size: int) -> np.ndarray:
    """A frame (BGR, as OpenCV writes): the shipped example chair, moving right with i. (A drawn box
    is refused by the shipped model's confidence as no object, which would leave the consumer idle.)"""
    from PIL import Image

    base = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((size, size)))
    shift = i % max(1, size // 8)
    frame = np.roll(base, shift, axis=1)
    frame[:, :shift] = base[:, :1]
    return np.ascontiguousarray(frame[..., ::-1])


def write_video(path: Path, frames: int, size: int) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (size, size))
    for i in range(frames):
        writer.write(drawn(i, size))
    writer.release()


def read_all(path: Path) -> list:
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=128, help="Frame side in pixels.")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per network.")
    parser.add_argument("--preview", action="store_true", help="The consumer also writes the preview PNG.")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    from recon.runtime.pipeline import Reconstructor

    reconstruct = Reconstructor(args.model, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "bench.avi"
        write_video(video, args.frames, args.size)
        out = tmp / "out"
        out.mkdir()

        def consume(result, index):
            if result.ok:
                result.save(out, stem=f"frame_{index:06d}", formats=("glb",), preview=args.preview)

        for frame in read_all(video)[:3]:  # warm-up
            consume(reconstruct.batch([frame], bgr=True)[0], 0)

        start = time.perf_counter()
        frames = read_all(video)
        capture_s = time.perf_counter() - start
        n = len(frames)
        start = time.perf_counter()
        results = [reconstruct.batch([frame], bgr=True)[0] for frame in frames]
        infer_s = time.perf_counter() - start
        start = time.perf_counter()
        for index, result in enumerate(results):
            consume(result, index)
        consume_s = time.perf_counter() - start
        del results

        start = time.perf_counter()
        import cv2

        capture = cv2.VideoCapture(str(video))
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            consume(reconstruct.batch([frame], bgr=True)[0], index)
            index += 1
        capture.release()
        sequential_s = time.perf_counter() - start

        start = time.perf_counter()
        with reconstruct.stream(video) as stream:
            for item in stream:
                consume(item.result, item.index)
        pipelined_s = time.perf_counter() - start
        stats = stream.stats

    stages = {"capture": capture_s, "infer": infer_s, "consume": consume_s}
    slowest = max(stages, key=stages.get)
    print(f"{n} frames of {args.size}x{args.size}, {args.threads} ONNX Runtime thread(s), consumer: glb"
          f"{' + preview' if args.preview else ''}")
    print("| loop | ms/frame | fps |")
    print("|---|---|---|")
    for name, seconds in stages.items():
        print(f"| stage {name} alone | {seconds / n * 1000:.1f} | {n / seconds:.1f} |")
    print(f"| sequential loop | {sequential_s / n * 1000:.1f} | {n / sequential_s:.1f} |")
    print(f"| pipelined stream | {pipelined_s / n * 1000:.1f} | {n / pipelined_s:.1f} |")
    print(f"pipelined / sequential: {sequential_s / pipelined_s:.2f}x; pipelined / slowest stage ({slowest}): "
          f"{stages[slowest] / pipelined_s:.2f}x (target >= 0.9)")
    print(f"stream stats: {stats}")


if __name__ == "__main__":
    main()
