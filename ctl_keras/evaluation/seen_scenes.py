"""Which scenes a model trained on, so an evaluation on another dataset can say how many of its test
scenes the model has already seen.

Training writes `<model_dir>/train_scenes.txt` (sorted scene ids, one a line) next to results.json. An
evaluation on data whose fingerprint differs from the model's is refused unless asked for explicitly
(`evaluate --cross_dataset`); then the overlap is counted from that file, or, for runs trained before it
existed, from the recorded data_dir while it still holds the build the model trained on.
"""

from __future__ import annotations

import os

SCENES_FILE = "train_scenes.txt"


def scene_ids(data_dir: str, split: str) -> set[str]:
    """Scene ids of every pair of `split` (reads only the ids; the train ones are cached per process)."""
    from ctl_keras.data import pipeline

    return pipeline.split_scene_ids(data_dir, split)


def write(model_dir: str, data_dir: str) -> None:
    from ctl_keras.utils.atomic import write_text

    scenes = sorted(scene_ids(data_dir, "train"))
    write_text(os.path.join(model_dir, SCENES_FILE), "".join(f"{s}\n" for s in scenes))


def trained_scenes(model_dir: str, recorded: dict) -> tuple[set[str] | None, str]:
    """(train scene ids of the model or None, where they came from / why unknown)."""
    path = os.path.join(model_dir, SCENES_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return {line.rstrip("\n") for line in f if line.strip()}, path
    old_dir, fingerprint = recorded.get("data_dir"), recorded.get("data_fingerprint")
    if old_dir and fingerprint and os.path.isfile(os.path.join(old_dir, "manifest.json")):
        from ctl_keras.data.fingerprint import dataset_fingerprint

        if dataset_fingerprint(old_dir) == fingerprint:
            return scene_ids(old_dir, "train"), old_dir
    return None, f"{path} is missing and the training data is no longer available"


def check_dataset(model_dir: str, recorded: dict, data_dir: str, split: str, cross_dataset: bool) -> dict | None:
    """None when `data_dir` holds the dataset the model trained on (or the run recorded none); else a
    ValueError, or with `cross_dataset` the overlap of the split's scenes with the training scenes."""
    expected = recorded.get("data_fingerprint")
    if not expected:
        return None  # trained before fingerprints existed: nothing to compare (as resume)
    from ctl_keras.data.fingerprint import dataset_fingerprint

    actual = dataset_fingerprint(data_dir)
    if actual == expected:
        return None
    if not cross_dataset:
        raise ValueError(f"{model_dir} was trained on dataset {expected} ({recorded.get('data_dir')}), but "
                         f"--data_dir {data_dir} holds dataset {actual}: its {split} scenes may be training "
                         "scenes of this model; pass --cross_dataset to evaluate on it anyway")
    scenes = scene_ids(data_dir, split)
    seen, source = trained_scenes(model_dir, recorded)
    return {"model_dataset": expected, "data_dataset": actual, "scenes": len(scenes),
            "scenes_seen_in_training": None if seen is None else len(scenes & seen), "train_scenes_from": source}


def describe(info: dict, split: str) -> str:
    seen = info["scenes_seen_in_training"]
    count = "an unknown number" if seen is None else f"{seen}"
    return (f"CROSS-DATASET: the model trained on dataset {info['model_dataset']}, scored on {info['data_dataset']}: "
            f"{count} of the {info['scenes']} {split} scenes were training scenes of this model "
            f"(from {info['train_scenes_from']})")
