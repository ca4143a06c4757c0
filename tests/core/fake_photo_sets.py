"""Tiny copies of the on-disk layouts of CUB-200-2011, Cars196 and Stanford Online Products (and
of an image folder), written into a test's folder: solid-colour images whose colour says their
class, and the list files the loaders read. Each writer returns ``{image path: class name}``."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

SIZE = 16  # image side of the fakes: small enough to keep decoding instant


def colour_of(number: int) -> tuple[int, int, int]:
    """A distinct solid colour per class number (up to 64 classes)."""
    return (40 + 60 * (number % 4), 40 + 60 * (number // 4 % 4), 40 + 60 * (number // 16 % 4))


def write_image(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIZE + 8, SIZE + 4), colour).save(path)


def fake_cub(root: Path, counts: dict[int, int]) -> dict[Path, str]:
    """``root/CUB_200_2011`` with ``counts[n]`` images of class number ``n`` (1..200); class
    ``n`` is named ``Bird n``, in folder ``nnn.Bird_n``."""
    base = root / "CUB_200_2011"
    truth, listing, labelling = {}, [], []
    for number, count in counts.items():
        for k in range(count):
            image_id = len(listing) + 1
            relative = f"{number:03d}.Bird_{number}/Bird_{number}_{k}.jpg"
            write_image(base / "images" / relative, colour_of(number))
            listing.append(f"{image_id} {relative}")
            labelling.append(f"{image_id} {number}")
            truth[base / "images" / relative] = f"Bird {number}"
    (base / "images.txt").write_text("\n".join(listing) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labelling) + "\n")
    return truth


def fake_cars(root: Path, counts: dict[int, int], *, num_names: int = 196) -> dict[Path, str]:
    """``root/cars196`` in the Kaggle layout: ``counts[n]`` images of class number ``n``, the
    first half of each class in ``anno_train.csv``, the rest in ``anno_test.csv``; class ``n`` is
    named ``Maker n/Model`` (a slash, as real names such as "Ram C/V" have)."""
    base = root / "cars196"
    base.mkdir(parents=True)
    names = [f"Maker {n}/Model" for n in range(1, num_names + 1)]
    (base / "names.csv").write_text("\n".join(names) + "\n")
    truth: dict[Path, str] = {}
    rows: dict[str, list[str]] = {"train": [], "test": []}
    for number, count in counts.items():
        for k in range(count):
            split = "train" if k < count // 2 else "test"
            file = f"{number:03d}{k:02d}.jpg"
            path = base / "car_data" / "car_data" / split / f"Maker {number}-Model" / file
            write_image(path, colour_of(number))
            rows[split].append(f"{file},1,2,30,40,{number}")
            truth[path] = names[number - 1]
    for split, lines in rows.items():
        (base / f"anno_{split}.csv").write_text("\n".join(lines) + "\n")
    return truth


SOP_HEADER = "image_id class_id super_class_id path"


def fake_sop(root: Path, train: dict[int, int], test: dict[int, int]) -> dict[Path, str]:
    """``root/Stanford_Online_Products``: ``train[n]`` images of class ``n`` listed in
    ``Ebay_train.txt``, ``test[n]`` in ``Ebay_test.txt``; class ``n`` is named ``str(n)``."""
    base = root / "Stanford_Online_Products"
    truth: dict[Path, str] = {}
    image_id = 0
    for name, counts in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        lines = [SOP_HEADER]
        for number, count in counts.items():
            for k in range(count):
                image_id += 1
                relative = f"thing_final/{number}_{k}.JPG"
                write_image(base / relative, colour_of(number))
                lines.append(f"{image_id} {number} 1 {relative}")
                truth[base / relative] = str(number)
        (base / name).write_text("\n".join(lines) + "\n")
    return truth


def fake_folder(root: Path, counts: dict[str, int]) -> dict[Path, str]:
    """An image folder with ``counts[name]`` images in sub-folder ``name``."""
    truth = {}
    for number, (name, count) in enumerate(counts.items()):
        for k in range(count):
            path = root / name / f"{k}.png"
            write_image(path, colour_of(number))
            truth[path] = name
    return truth


def fake_flowers(root: Path, classes: int, per_class: int = 3) -> dict[Path, str]:
    """``root/flowers-102`` with ``per_class`` images of raw classes 1..``classes``; image ids
    alternate classes; official split: the first ids train, the next validate, the rest test."""
    import numpy as np
    import scipy.io
    from torchvision.datasets import Flowers102

    base = root / "flowers-102"
    raw = np.tile(np.arange(1, classes + 1), per_class)
    truth = {}
    for image_id, number in enumerate(raw.tolist(), start=1):
        path = base / "jpg" / f"image_{image_id:05d}.jpg"
        write_image(path, colour_of(number))
        truth[path] = Flowers102.classes[number - 1]
    scipy.io.savemat(base / "imagelabels.mat", {"labels": raw[None, :]})
    ids = np.arange(1, len(raw) + 1)
    third = len(ids) // 3
    scipy.io.savemat(
        base / "setid.mat",
        {
            "trnid": ids[:third][None],
            "valid": ids[third : 2 * third][None],
            "tstid": ids[2 * third :][None],
        },
    )
    return truth


def fake_pets(root: Path, classes: int, per_class: int = 4) -> dict[Path, str]:
    """``root/oxford-iiit-pet`` with breeds ``Breed_<n>``: the first images of each breed in
    trainval.txt, the last in test.txt."""
    base = root / "oxford-iiit-pet"
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    truth = {}
    for number in range(classes):
        for k in range(per_class):
            image_id = f"Breed_{chr(97 + number)}_{k}"
            path = base / "images" / f"{image_id}.jpg"
            write_image(path, colour_of(number))
            lines["trainval" if k < per_class - 1 else "test"].append(
                f"{image_id} {number + 1} 1 1"
            )
            truth[path] = f"Breed {chr(97 + number)}"
    (base / "annotations").mkdir()
    for split, entries in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(entries) + "\n")
    return truth


def fake_dogs(root: Path, classes: int, per_class: int = 4) -> dict[Path, str]:
    """``root/stanford-dogs`` with folders ``n0<n>-Dog_<n>``, listed in train_list.mat (all but
    the last image of each) and test_list.mat."""
    import numpy as np
    import scipy.io

    base = root / "stanford-dogs"
    lists: dict[str, list[str]] = {"train_list.mat": [], "test_list.mat": []}
    truth = {}
    for number in range(classes):
        folder = f"n0{number:02d}-Dog_{number:02d}"
        for k in range(per_class):
            relative = f"{folder}/{k}.jpg"
            write_image(base / "Images" / relative, colour_of(number))
            lists["train_list.mat" if k < per_class - 1 else "test_list.mat"].append(relative)
            truth[base / "Images" / relative] = f"Dog {number:02d}"
    for name, files in lists.items():
        scipy.io.savemat(base / name, {"file_list": np.array(files, dtype=object)[:, None]})
    return truth
