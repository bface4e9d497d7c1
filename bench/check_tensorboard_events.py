#!/usr/bin/env python3
"""Reads a Lumen TensorBoard event file with TensorBoard's own readers and checks it.

    python3 bench/check_tensorboard_events.py EVENT_FILE_OR_DIR [--csv metrics.csv]
        [--expect TAG=STEP:VALUE ...] [--hparams NAME=VALUE ...] [--images TAG=STEP:HxW ...]

Checks, with TensorBoard's event_file_loader and EventAccumulator (pip installs tensorboard
when it is missing):
  - the first record is the file_version "brain.Event:2" event and every record parses
    (the loader verifies the TFRecord framing and both CRC-32Cs);
  - with --csv (the CSVLogger file of the same run): every scalar tag of the CSV is in the
    event file with the same steps in the same order, and every value equals the CSV value
    rounded to float32 (TensorBoard's simple_value is a float);
  - with --expect: the scalar TAG at STEP equals VALUE (as float32);
  - with --hparams: the hparams plugin's session_start_info holds NAME=VALUE, and the
    experiment lists the hyper-parameter;
  - with --images: an image TAG at STEP of height H and width W, whose PNG bytes Pillow (pip
    installs it when missing) decodes to an 8-bit grayscale image of that size.
Not part of ctest: it needs Python and TensorBoard. Exits non-zero on the first failure.
"""
import argparse
import csv
import glob
import os
import subprocess
import sys


def ensure_tensorboard():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "tensorboard"])


def find_event_file(path):
    if os.path.isfile(path):
        return path
    files = sorted(glob.glob(os.path.join(path, "**", "events.out.tfevents.*"), recursive=True))
    if len(files) != 1:
        sys.exit(f"expected exactly one event file under {path}, found {files}")
    return files[0]


def f32(x):
    import numpy as np

    return float(np.float32(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--csv")
    parser.add_argument("--expect", nargs="*", default=[])
    parser.add_argument("--hparams", nargs="*", default=[])
    parser.add_argument("--images", nargs="*", default=[])
    args = parser.parse_args()

    ensure_tensorboard()
    from tensorboard.backend.event_processing import event_accumulator, event_file_loader
    from tensorboard.plugins.hparams import plugin_data_pb2

    path = find_event_file(args.path)
    events = list(event_file_loader.LegacyEventFileLoader(path).Load())
    assert events, "no events"
    assert events[0].file_version == "brain.Event:2", events[0]
    print(f"{path}: {len(events)} records, file_version {events[0].file_version}")

    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags}
    print("scalar tags:", ", ".join(f"{t} ({len(v)})" for t, v in sorted(scalars.items())))

    failures = []
    if args.csv:
        expected = {}
        with open(args.csv, newline="") as f:
            for row in csv.DictReader(f):
                step = int(row["step"])
                for key, value in row.items():
                    if key == "step" or value == "":
                        continue
                    expected.setdefault(key, []).append((step, f32(float(value))))
        for tag, rows in expected.items():
            got = scalars.get(tag)
            if got is None:
                failures.append(f"tag {tag!r} of the CSV is missing from the event file")
            elif got != rows:
                failures.append(f"tag {tag!r}: event file {got} != CSV {rows}")
        print(f"compared {sum(len(v) for v in expected.values())} CSV values over {len(expected)} tags")

    for spec in args.expect:
        tag, rest = spec.split("=", 1)
        step, value = rest.split(":", 1)
        got = dict(scalars.get(tag, []))
        if got.get(int(step)) != f32(float(value)):
            failures.append(f"{tag} at step {step}: expected {f32(float(value))}, got {got.get(int(step))}")

    if args.hparams:
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
        names = {info.name for info in experiment.experiment.hparam_infos}
        for spec in args.hparams:
            name, value = spec.split("=", 1)
            v = start.session_start_info.hparams.get(name)
            got = None if v is None else (v.string_value if v.HasField("string_value") else v.number_value)
            want = value if v is not None and v.HasField("string_value") else float(value)
            if got != want:
                failures.append(f"hparam {name}: expected {want!r}, got {got!r}")
            if name not in names:
                failures.append(f"hparam {name} not in the experiment's hparam_infos {sorted(names)}")
        print("hparams:", {k: (v.string_value or v.number_value) for k, v in start.session_start_info.hparams.items()})

    for spec in args.images:
        tag, rest = spec.split("=", 1)
        step, size = rest.split(":", 1)
        h, w = (int(v) for v in size.split("x"))
        found = [e for e in acc.Images(tag) if e.step == int(step)] if tag in acc.Tags()["images"] else []
        if not found:
            failures.append(f"no image {tag!r} at step {step}; image tags {acc.Tags()['images']}")
            continue
        e = found[0]
        try:
            import PIL  # noqa: F401
        except ImportError:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "pillow"])
        import io
        from PIL import Image
        img = Image.open(io.BytesIO(e.encoded_image_string))
        img.load()  # decodes the whole stream: checks the zlib data and the CRCs
        if (e.height, e.width) != (h, w) or img.size != (w, h) or img.mode != "L":
            failures.append(f"image {tag!r}: {e.height}x{e.width}, PNG {img.size} {img.mode}; expected {h}x{w} L")
        else:
            print(f"image {tag!r} at step {step}: {h}x{w} grayscale PNG, pixels {img.getextrema()}")

    for f in failures:
        print("FAIL:", f)
    if failures:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
