"""Small fixture files in the exact official formats, for the data tests (no network).

* CIFAR: `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`, a gzipped tar whose top directory is
  `cifar-10-batches-py` / `cifar-100-python`, holding pickled batches with the official keys
  (`batch_label`, `labels` / `fine_labels` + `coarse_labels`, `data` N x 3072 uint8, `filenames`)
  and `batches.meta` / `meta` (`label_names` / `fine_label_names`, `coarse_label_names`). The
  pickles are written the way the real (Python 2) files are: keys and names as 8-bit strings
  (BINSTRING opcodes), so `pickle.load(f, encoding="latin1")` gives str keys, as with the real ones.
* SVHN: `*_32x32.mat` with X uint8 32 x 32 x 3 x N and y N x 1 in 1..10 (10 = digit 0).
* Image folders: ROOT/train/<class>/*.png|jpg and ROOT/test/<class>/*.
* CUB-200-2011: `CUB_200_2011.tgz`, a gzipped tar whose top directory is `CUB_200_2011` holding
  `images.txt`, `image_class_labels.txt`, `train_test_split.txt`, `bounding_boxes.txt`,
  `classes.txt` (official line formats) and `images/<NNN.Class_name>/<file>.jpg`, plus a few of the
  files the reader ignores (top-level `attributes.txt`, `README`, `parts/`, `attributes/`).
* Caltech-101: `caltech-101.zip` holding `caltech-101/101_ObjectCategories.tar.gz` (that tar.gz:
  `101_ObjectCategories/<class>/image_NNNN.jpg`, directory entries, `BACKGROUND_Google/tmp`),
  `Annotations.tar` and `show_annotation.m`; the same tar as a re-packed copy.
* Weizmann Horse: `weizmann_horse_db/rgb/<stem>.jpg` and `figure_ground/<stem>.jpg`, each mask a
  smaller greyscale JPEG of the same aspect ratio.

Each maker returns what the parser should produce, so tests compare arrays exactly.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from lpa.data.sources import RemoteFile

UNREACHABLE = "http://127.0.0.1:9"  # discard port on localhost: connection refused at once


class _Py2Pickler(pickle._Pickler):
    """Pickle bytes as Python 2 `str` (BINSTRING), like the official CIFAR batches."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def remote(filename: str, md5: str) -> RemoteFile:
    """A RemoteFile for a fixture: the official name, an unreachable URL, the fixture's MD5."""
    return RemoteFile(filename, f"{UNREACHABLE}/{filename}", md5)


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(payload))


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def make_cifar10_archive(raw_dir: Path, per_batch: int = 6, n_test: int = 8, seed: int = 0) -> dict:
    """Write raw_dir/cifar-10-python.tar.gz; return {md5, path, train_x, train_y, test_x, test_y, classes}."""
    rng = np.random.default_rng(seed)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    raw_dir.mkdir(parents=True, exist_ok=True)
    path = raw_dir / "cifar-10-python.tar.gz"
    train_x, train_y = [], []
    with tarfile.open(path, "w:gz") as tar:
        top = "cifar-10-batches-py"
        _add(tar, f"{top}/readme.html", b"<html>fixture</html>")
        meta = {b"num_cases_per_batch": per_batch, b"label_names": [c.encode() for c in classes], b"num_vis": 3072}
        _add(tar, f"{top}/batches.meta", py2_pickle(meta))
        for i in range(1, 6):
            x, y = _images(rng, per_batch), rng.integers(0, 10, per_batch).tolist()
            train_x.append(x)
            train_y += y
            batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": y, b"data": x,
                     b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)]}
            _add(tar, f"{top}/data_batch_{i}", py2_pickle(batch))
        test_x, test_y = _images(rng, n_test), rng.integers(0, 10, n_test).tolist()
        batch = {b"batch_label": b"testing batch 1 of 1", b"labels": test_y, b"data": test_x,
                 b"filenames": [f"test_{j}.png".encode() for j in range(n_test)]}
        _add(tar, f"{top}/test_batch", py2_pickle(batch))
    return {
        "path": path, "md5": md5_of(path), "classes": classes,
        "train_x": np.concatenate(train_x).reshape(-1, 3, 32, 32), "train_y": np.array(train_y, np.int64),
        "test_x": test_x.reshape(-1, 3, 32, 32), "test_y": np.array(test_y, np.int64),
    }


def make_cifar100_archive(raw_dir: Path, n_train: int = 12, n_test: int = 6, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    fine = [f"fine_{i:02d}" for i in range(100)]
    coarse = [f"coarse_{i:02d}" for i in range(20)]
    raw_dir.mkdir(parents=True, exist_ok=True)
    path = raw_dir / "cifar-100-python.tar.gz"
    out = {"path": path, "classes": fine}
    with tarfile.open(path, "w:gz") as tar:
        top = "cifar-100-python"
        _add(tar, f"{top}/meta", py2_pickle({b"fine_label_names": [c.encode() for c in fine],
                                             b"coarse_label_names": [c.encode() for c in coarse]}))
        for split, n in (("train", n_train), ("test", n_test)):
            x, y = _images(rng, n), rng.integers(0, 100, n).tolist()
            batch = {b"filenames": [f"{split}_{j}.png".encode() for j in range(n)],
                     b"batch_label": f"{split}ing batch 1 of 1".encode(), b"fine_labels": y,
                     b"coarse_labels": [v // 5 for v in y], b"data": x}
            _add(tar, f"{top}/{split}", py2_pickle(batch))
            out[f"{split}_x"] = x.reshape(-1, 3, 32, 32)
            out[f"{split}_y"] = np.array(y, np.int64)
    out["md5"] = md5_of(path)
    return out


def make_svhn_mat(path: Path, n: int, seed: int = 2) -> dict:
    """Write an SVHN-format .mat; return {md5, images (N x 3 x 32 x 32), labels (0..9)}."""
    import scipy.io

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    digits = rng.integers(0, 10, n)
    digits[:2] = [0, 9]  # make sure digit 0 (stored as 10) occurs
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"X": x, "y": y})
    return {"path": path, "md5": md5_of(path), "images": x.transpose(3, 2, 0, 1), "labels": digits.astype(np.int64)}


def make_imagefolder(root: Path, classes=("cat", "dog", "eel"), per_class: int = 3, seed: int = 3) -> Path:
    """ROOT/train|test/<class>/ with PNG and JPEG files of mixed sizes and modes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = [(32, 32), (40, 24), (17, 50)][i % 3]
                arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                img = Image.fromarray(arr)
                if i % 3 == 0:
                    img.save(d / f"{i:03d}.png")
                elif i % 3 == 1:
                    img.convert("L").save(d / f"{i:03d}.JPG", quality=90)
                else:
                    img.convert("RGBA").save(d / f"{i:03d}.png")
    (root / "train" / classes[0] / "notes.txt").write_text("not an image: ignored")
    return root


# ----------------------------------------------------------------------------- CUB-200-2011

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
CUB_COLOUR_ID = 5  # the image whose bounding box holds a distinct colour (see make_cub_archive)
CUB_OUTSIDE, CUB_INSIDE = (20, 60, 220), (230, 30, 30)  # its background and its box colours


def _jpeg(arr: np.ndarray, mode: str, quality: int = 90) -> bytes:
    from PIL import Image

    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_cub_archive(raw_dir: Path, seed: int = 4, edit=None, top: str = "CUB_200_2011") -> dict:
    """Write raw_dir/CUB_200_2011.tgz: 3 classes x 3 JPEGs of mixed sizes, some greyscale.

    Image ids 1..9 (class by class, as the official images.txt), split 1/0 as in `train` below.
    Image CUB_COLOUR_ID is CUB_OUTSIDE everywhere except its integer box, which is CUB_INSIDE;
    its listed box is fractional (floor/ceil give the integer one). One box reaches outside its
    image (clamped). `edit(members)` may change or delete entries of the {name under top/: bytes}
    dict before the archive is written (malformed-archive tests).

    Returns {path, md5, classes, records}; each record: id, path, label (0-based), train, jpeg
    (bytes), mode, crop (the integer left, upper, right, lower crop box). `cub_expected` turns
    them into the arrays the reader must produce.
    """
    rng = np.random.default_rng(seed)
    sizes = [(40, 30), (23, 50), (33, 33)]              # (width, height)
    train = [1, 0, 1, 1, 0, 0, 0, 1, 1]
    modes = ["RGB", "L", "RGB", "RGB", "RGB", "L", "RGB", "RGB", "L"]
    records, members = [], {}
    for i in range(9):
        image_id, label = i + 1, i // 3
        w, h = sizes[i % 3]
        if image_id == CUB_COLOUR_ID:
            w, h = 48, 40
            crop = (16, 8, 40, 32)                      # listed as x=16.3 y=8.9 w=23.1 h=22.6
            box = "16.3 8.9 23.1 22.6"
            arr = np.empty((h, w, 3), np.uint8)
            arr[:] = CUB_OUTSIDE
            arr[crop[1]:crop[3], crop[0]:crop[2]] = CUB_INSIDE
            payload = _jpeg(arr, "RGB", quality=95)
        else:
            arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            if image_id == 8:
                crop, box = (0, 0, w, h), f"-3.5 -2.0 {w + 10}.0 {h + 7}.0"  # clamped to the image
            else:
                x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
                cw, ch = int(rng.integers(w // 3, w - x)), int(rng.integers(h // 3, h - y))
                crop, box = (x, y, x + cw, y + ch), f"{x}.0 {y}.0 {cw}.0 {ch}.0"
            payload = _jpeg(arr, modes[i])
        path = f"{CUB_CLASSES[label]}/{CUB_CLASSES[label].split('.', 1)[1]}_{i:04d}_{100 + i}.jpg"
        records.append({"id": image_id, "path": path, "label": label, "train": bool(train[i]),
                        "jpeg": payload, "mode": modes[i], "crop": crop, "box": box})
    for r in records:
        members[f"images/{r['path']}"] = r["jpeg"]
    members["README"] = b"fixture in the layout of the official CUB_200_2011.tgz\n"
    members["parts/parts.txt"] = b"1 back\n2 beak\n"
    members["attributes/certainties.txt"] = b"1 not visible\n"
    members["bounding_boxes.txt"] = "".join(f"{r['id']} {r['box']}\n" for r in records).encode()
    members["classes.txt"] = "".join(f"{k + 1} {c}\n" for k, c in enumerate(CUB_CLASSES)).encode()
    members["image_class_labels.txt"] = "".join(f"{r['id']} {r['label'] + 1}\n" for r in records).encode()
    members["images.txt"] = "".join(f"{r['id']} {r['path']}\n" for r in records).encode()
    members["train_test_split.txt"] = "".join(f"{r['id']} {int(r['train'])}\n" for r in records).encode()
    if edit is not None:
        edit(members)

    raw_dir.mkdir(parents=True, exist_ok=True)
    path = raw_dir / "CUB_200_2011.tgz"
    with tarfile.open(path, "w:gz") as tar:
        dirs = {top} | {f"{top}/{name.rsplit('/', 1)[0]}" for name in members if "/" in name}
        dirs |= {f"{top}/images"}
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, payload in members.items():
            _add(tar, f"{top}/{name}", payload)
        _add(tar, "attributes.txt", b"1 has_bill_shape::curved_(up_or_down)\n")
    return {"path": path, "md5": md5_of(path), "classes": list(CUB_CLASSES), "records": records}


def cub_expected(fx: dict, size: int, crop: bool) -> dict:
    """{train_x, train_y, test_x, test_y}: each image decoded, made RGB, cut to its integer crop
    box (if crop) and resized (bilinear) to size x size, in image id order."""
    from PIL import Image

    out = {}
    for split, flag in (("train", True), ("test", False)):
        xs, ys = [], []
        for r in sorted(fx["records"], key=lambda r: r["id"]):
            if r["train"] != flag:
                continue
            with Image.open(io.BytesIO(r["jpeg"])) as img:
                img = img.convert("RGB")
                if crop:
                    img = img.crop(r["crop"])
                if img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                xs.append(np.asarray(img).transpose(2, 0, 1))
            ys.append(r["label"])
        out[f"{split}_x"] = np.stack(xs)
        out[f"{split}_y"] = np.array(ys, np.int64)
    return out


# ----------------------------------------------------------------------------- Caltech-101

# class folder -> image count: inline_skate has train_per_class + 1 images with the tests' 3 (the
# real set's smallest class has 31 with the customary 30); BACKGROUND_Google is never a class
CALTECH_COUNTS = {"accordion": 8, "Leopards": 7, "inline_skate": 4, "BACKGROUND_Google": 5}
CALTECH_GREY = "image_0002.jpg"  # saved greyscale in every class, as some real Caltech images are


def make_caltech101_tree(counts: dict[str, int] = CALTECH_COUNTS, seed: int = 5) -> dict[str, dict[str, bytes]]:
    """{class folder: {image_NNNN.jpg: JPEG bytes}}: random pictures of varied sizes (about 300 x 200
    in the real set, smaller here), CALTECH_GREY greyscale."""
    rng = np.random.default_rng(seed)
    sizes = [(30, 20), (24, 36), (41, 27), (20, 20)]    # (width, height)
    tree = {}
    for c, n in counts.items():
        tree[c] = {}
        for i in range(1, n + 1):
            w, h = sizes[(i + len(c)) % len(sizes)]
            name = f"image_{i:04d}.jpg"
            tree[c][name] = _jpeg(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8),
                                  "L" if name == CALTECH_GREY else "RGB")
    return tree


def _dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def caltech101_tar(tree: dict[str, dict[str, bytes]], mode: str = "w:gz", top: str = "") -> bytes:
    """101_ObjectCategories/<class>/image_NNNN.jpg as the official 101_ObjectCategories.tar.gz has it
    (directory entries, BACKGROUND_Google/tmp), under `top`/ if given (a re-packed copy)."""
    buf = io.BytesIO()
    prefix = f"{top}/" if top else ""
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        if top:
            _dir(tar, top)
        _dir(tar, f"{prefix}101_ObjectCategories")
        for c in sorted(tree):
            _dir(tar, f"{prefix}101_ObjectCategories/{c}")
            for name, payload in sorted(tree[c].items()):
                _add(tar, f"{prefix}101_ObjectCategories/{c}/{name}", payload)
        if "BACKGROUND_Google" in tree:
            _add(tar, f"{prefix}101_ObjectCategories/BACKGROUND_Google/tmp", b"\x00" * 12)
    return buf.getvalue()


def make_caltech101_zip(raw_dir: Path, tree: dict[str, dict[str, bytes]], inner: bytes | None = None) -> dict:
    """Write raw_dir/caltech-101.zip in the layout of CaltechDATA's (torchvision's download): the
    folder caltech-101/ holding 101_ObjectCategories.tar.gz (`inner`, else the tree's tar.gz),
    Annotations.tar and show_annotation.m. Returns {path, md5}."""
    import zipfile

    raw_dir.mkdir(parents=True, exist_ok=True)
    path = raw_dir / "caltech-101.zip"
    annotations = io.BytesIO()
    with tarfile.open(fileobj=annotations, mode="w") as tar:
        _add(tar, "Annotations/accordion/annotation_0001.mat", b"MATLAB 5.0 MAT-file, fixture")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("caltech-101/", b"")
        zf.writestr("caltech-101/101_ObjectCategories.tar.gz", inner if inner is not None else caltech101_tar(tree))
        zf.writestr("caltech-101/Annotations.tar", annotations.getvalue())
        zf.writestr("caltech-101/show_annotation.m", b"function show_annotation(imgfile, annotation_file)\n")
    return {"path": path, "md5": md5_of(path)}


def caltech101_pictures(tree: dict[str, dict[str, bytes]], size: int) -> dict[tuple[str, str], np.ndarray]:
    """{(class, file): uint8 3 x size x size}: each JPEG made RGB and resized (bilinear), as the reader must."""
    from PIL import Image

    out = {}
    for c, files in tree.items():
        for name, payload in files.items():
            with Image.open(io.BytesIO(payload)) as img:
                img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                out[c, name] = np.asarray(img).transpose(2, 0, 1)
    return out


# ----------------------------------------------------------------------------- Weizmann Horse

# (stem, photo (width, height), mask (width, height)): masks smaller than their photo with the same
# aspect ratio up to rounding, as in the real set (81 x 100 up to 1280 x 960 photos)
WEIZMANN_PAIRS = [("horse001", (100, 81), (50, 40)), ("horse002", (64, 48), (32, 24)), ("horse003", (90, 60), (90, 60))]


def weizmann_mask(width: int, height: int) -> np.ndarray:
    """A horse-like ellipse, 255 inside and 0 outside, with a grey ramp at its edge."""
    y, x = np.mgrid[0:height, 0:width]
    r = np.hypot((x - width / 2) / (width * 0.35), (y - height / 2) / (height * 0.3))
    return np.clip((1.15 - r) / 0.3 * 255, 0, 255).astype(np.uint8)


def make_weizmann(root: Path, pairs=WEIZMANN_PAIRS, seed: int = 6) -> Path:
    """ROOT/weizmann_horse_db/rgb/<stem>.jpg (colour) and figure_ground/<stem>.jpg (a greyscale JPEG
    mask, so values near the edge are neither 0 nor 255). Returns ROOT/weizmann_horse_db."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    db = root / "weizmann_horse_db"
    (db / "rgb").mkdir(parents=True, exist_ok=True)
    (db / "figure_ground").mkdir(parents=True, exist_ok=True)
    for stem, (pw, ph), (mw, mh) in pairs:
        Image.fromarray(rng.integers(0, 256, size=(ph, pw, 3), dtype=np.uint8)).save(db / "rgb" / f"{stem}.jpg")
        Image.fromarray(weizmann_mask(mw, mh), mode="L").save(db / "figure_ground" / f"{stem}.jpg", quality=75)
    return db


def tar_folder(folder: Path, archive: Path, arcname: str) -> Path:
    """`folder` packed as `archive` (.tar.gz) under the name `arcname`."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive
