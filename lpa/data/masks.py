"""Image + mask datasets: pictures with a ground-truth object mask each, for lpa.experiments.segmentation
(`segmentation.datasets`, NAME=ROOT). `read_mask_dataset(root)` recognises four layouts:

    Object Discovery   ROOT/<Class>100/*.jpg|png with ROOT/<Class>100/GroundTruth/<same stem>.png (only
                       the 100-image subsets when ROOT also holds the full sets, as its Data/ folder does)
    Weizmann Horse     ROOT/weizmann_horse_db/ (or ROOT itself) holding rgb/<name> and figure_ground/<same
                       stem>; ROOT may also be a .tar, .tar.gz or .tgz archive of it (read without extracting)
    generic            ROOT/<class>/images/* with ROOT/<class>/masks/<same stem>.png
    lpa dataset        an extracted dataset with test_masks.npy (data/extracted/pasted_digits): its test split

and returns every pair as a MaskedImage (H x W x 3 uint8 picture, H x W bool mask) in a fixed
order (class, name). A missing, unreadable or inconsistent file is one DatasetFormatError naming it.

Weizmann Horse (Borenstein and Ullman 2002: 328 horse photographs, group `horse`) stores each mask
smaller than its photograph, a plain resize (the same aspect ratio), as a greyscale JPEG whose edge
values are not exactly 0/255. The mask is binarised as every other (grey >= 128, i.e. > 127) and
kept at its own size; the photograph is resized to it (Pillow bilinear, antialiased). That way
the ground truth is exactly what was annotated (no interpolated mask edges, no threshold choice
after a resize), and nothing the networks can see is lost: they look at 32 x 32 or 80 x 80
versions of the photograph. A mask whose aspect ratio differs from its photograph's by more than
rounding (it would be a crop, or another picture's mask) is a DatasetFormatError.
"""
from __future__ import annotations

import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from lpa.data.arrays import MASKS_FILE, META_FILE, read_meta, read_split
from lpa.data.imagefolder import IMAGE_ERRORS, IMAGE_EXTENSIONS, image_files
from lpa.errors import DatasetFormatError

MASK_LEVEL = 128  # a ground-truth mask pixel is object where its grey value is at least this
WEIZMANN_TOP = "weizmann_horse_db"
WEIZMANN_IMAGES, WEIZMANN_MASKS = "rgb", "figure_ground"
WEIZMANN_GROUP = "horse"
MASK_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# what reading a truncated, corrupt or foreign tar archive raises (gzip.BadGzipFile is an OSError)
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)
ASPECT_SLACK = 0.01  # allowed relative difference of the two scale factors beyond rounding (real set: < 0.6 %)


@dataclass
class MaskedImage:
    """One picture of a mask dataset with its ground-truth object mask (same height and width)."""
    group: str          # the class folder (Object Discovery: Airplane100 -> airplane)
    name: str
    image: np.ndarray   # H x W x 3 uint8
    mask: np.ndarray    # H x W bool


Payload = Path | bytes            # a file in a folder, or an archive member's bytes
Found = dict[str, tuple[str, Payload]]  # file stem -> (the file's name in messages, payload)


def _decode(payload: Payload, shown: str, what: str, mode: str) -> Image.Image:
    """The picture of a file or member, converted to `mode`. The stored pixels, no EXIF turn: masks are
    drawn on the stored pixels and carry no EXIF."""
    try:
        with Image.open(payload if isinstance(payload, Path) else io.BytesIO(payload)) as img:
            return img.convert(mode)
    except IMAGE_ERRORS as err:
        raise DatasetFormatError(f"cannot read {what} {shown} ({type(err).__name__}); replace or remove it") from None


def _open_rgb(path: Path) -> np.ndarray:
    return np.asarray(_decode(path, str(path), "image", "RGB"))


def _open_mask(path: Path, image_path: Path, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(_decode(path, str(path), "mask", "L")) >= MASK_LEVEL
    if mask.shape != shape:
        raise DatasetFormatError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
                                 f"{shape[1]}x{shape[0]}; masks must have their image's size")
    return mask


def _read_pairs(group: str, images_dir: Path, masks_dir: Path) -> list[MaskedImage]:
    items = []
    masks = {p.stem: p for p in image_files(masks_dir)} if masks_dir.is_dir() else {}
    images = image_files(images_dir)
    if not images:
        raise DatasetFormatError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir}")
    for path in images:
        if path.stem not in masks:
            raise DatasetFormatError(f"image {path} has no mask {masks_dir / (path.stem + '.png')}; add it or "
                                     f"remove the image")
        image = _open_rgb(path)
        items.append(MaskedImage(group, path.stem, image, _open_mask(masks[path.stem], path, image.shape[:2])))
    return items


def _same_aspect(image: tuple[int, int], mask: tuple[int, int]) -> bool:
    """Whether a (width, height) mask is a resize of a (width, height) image: the two scale factors
    agree up to the rounding of each mask side to whole pixels (half a pixel each), plus ASPECT_SLACK."""
    sx, sy = mask[0] / image[0], mask[1] / image[1]
    return abs(sx / sy - 1.0) <= 0.5 / mask[0] + 0.5 / mask[1] + ASPECT_SLACK


def _weizmann_item(stem: str, image: tuple[str, Payload], mask: tuple[str, Payload]) -> MaskedImage:
    picture = _decode(image[1], image[0], "image", "RGB")
    grey = _decode(mask[1], mask[0], "mask", "L")
    if not _same_aspect(picture.size, grey.size):
        raise DatasetFormatError(f"mask {mask[0]} is {grey.size[0]}x{grey.size[1]} but its image {image[0]} is "
                                 f"{picture.size[0]}x{picture.size[1]}: not a resize of it (another aspect ratio); "
                                 f"replace the mask or remove the pair")
    if picture.size != grey.size:
        picture = picture.resize(grey.size, Image.Resampling.BILINEAR)
    return MaskedImage(WEIZMANN_GROUP, stem, np.asarray(picture), np.asarray(grey) >= MASK_LEVEL)


def _weizmann_pairs(images: Found, masks: Found, where: str) -> list[MaskedImage]:
    """Every (photograph, mask) pair by file stem, in stem order; a file without its partner is an error."""
    if not images:
        raise DatasetFormatError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {where}/{WEIZMANN_IMAGES}/")
    for stem in sorted(images):
        if stem not in masks:
            raise DatasetFormatError(f"image {images[stem][0]} has no mask {where}/{WEIZMANN_MASKS}/{stem}.* (masks "
                                     f"have their image's file name); add it or remove the image")
    for stem in sorted(masks):
        if stem not in images:
            raise DatasetFormatError(f"mask {masks[stem][0]} has no image {where}/{WEIZMANN_IMAGES}/{stem}.* (masks "
                                     f"have their image's file name); add it or remove the mask")
    return [_weizmann_item(stem, images[stem], masks[stem]) for stem in sorted(images)]


def _weizmann_folder(root: Path) -> Path | None:
    """The folder holding rgb/ and figure_ground/: ROOT/weizmann_horse_db, or ROOT itself."""
    for folder in (root / WEIZMANN_TOP, root):
        if (folder / WEIZMANN_IMAGES).is_dir() and (folder / WEIZMANN_MASKS).is_dir():
            return folder
    return None


def _read_weizmann_folder(folder: Path) -> list[MaskedImage]:
    found = {sub: {p.stem: (str(p), p) for p in image_files(folder / sub)} for sub in (WEIZMANN_IMAGES, WEIZMANN_MASKS)}
    return _weizmann_pairs(found[WEIZMANN_IMAGES], found[WEIZMANN_MASKS], str(folder))


def _read_weizmann_archive(archive: Path) -> list[MaskedImage]:
    """The pairs of a tar archive holding rgb/ and figure_ground/ at its top level or in one folder."""
    found: dict[str, Found] = {WEIZMANN_IMAGES: {}, WEIZMANN_MASKS: {}}
    prefixes = set()
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name.removeprefix("./")).parts
                if not member.isfile() or len(parts) not in (2, 3) or parts[-2] not in found:
                    continue
                name = parts[-1]
                if name.startswith(".") or PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                prefixes.add("/".join(parts[:-2]))
                shown = f"{archive}:{'/'.join(parts)}"
                found[parts[-2]][PurePosixPath(name).stem] = (shown, tar.extractfile(member).read())
    except ARCHIVE_ERRORS as err:
        first = (str(err).strip().splitlines() or [""])[0][:100]
        raise DatasetFormatError(f"cannot read {archive} ({type(err).__name__}: {first}); replace it with a good "
                                 f"archive or point segmentation.datasets at the extracted folder") from None
    if not any(found.values()):
        raise DatasetFormatError(f"{archive} holds no {WEIZMANN_IMAGES}/ and {WEIZMANN_MASKS}/ folders (at its top "
                                 f"level or in one folder such as {WEIZMANN_TOP}/): archives are read as Weizmann "
                                 f"Horse; extract other datasets to a folder")
    if len(prefixes) > 1:
        raise DatasetFormatError(f"{archive} holds {WEIZMANN_IMAGES}/ and {WEIZMANN_MASKS}/ folders in more than one "
                                 f"place ({', '.join(sorted(p or '.' for p in prefixes))}); keep one set")
    prefix = prefixes.pop()
    return _weizmann_pairs(found[WEIZMANN_IMAGES], found[WEIZMANN_MASKS], f"{archive}:{prefix or '.'}")


def read_mask_dataset(root: str | Path) -> list[MaskedImage]:
    """Every (image, mask) of a mask dataset, grouped by class, in a fixed order (class, name)."""
    root = Path(root)
    if root.is_file() and root.name.lower().endswith(MASK_ARCHIVE_SUFFIXES):
        return _read_weizmann_archive(root)
    if not root.is_dir():
        raise DatasetFormatError(f"segmentation dataset {root} does not exist; set segmentation.datasets to "
                                 f"NAME=ROOT with ROOT an Object Discovery folder, a Weizmann Horse folder or "
                                 f".tar.gz, ROOT/<class>/images+masks, or an extracted lpa dataset with {MASKS_FILE}")
    if (root / META_FILE).exists():
        if not (root / MASKS_FILE).exists():
            raise DatasetFormatError(f"{root} is an lpa dataset without object masks ({MASKS_FILE}); only datasets "
                                     f"that have them (pasted_digits) can be segmentation datasets")
        images, labels = read_split(root, "test")
        masks = np.load(root / MASKS_FILE, allow_pickle=False)
        if masks.shape != (images.shape[0], *images.shape[2:]):
            raise DatasetFormatError(f"{root / MASKS_FILE} holds {masks.shape} masks for test images of shape "
                                     f"{images.shape}; re-run the download stage that wrote {root}")
        classes = read_meta(root)["classes"]
        order = np.argsort(labels, kind="stable")
        return [MaskedImage(str(classes[labels[i]]), f"test{i:05d}", images[i].transpose(1, 2, 0), masks[i].astype(bool))
                for i in order]
    weizmann = _weizmann_folder(root)
    if weizmann is not None:
        return _read_weizmann_folder(weizmann)
    groups = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    subsets = [p for p in groups if p.name.endswith("100") and (p / "GroundTruth").is_dir()]
    if subsets:  # Object Discovery's Data/ holds the full sets next to the 100-image ones: the paper's are these
        groups = subsets
    items: list[MaskedImage] = []
    for folder in groups:
        if (folder / "GroundTruth").is_dir():      # Object Discovery: Airplane100/GroundTruth
            name = folder.name[:-3] if folder.name.endswith("100") else folder.name
            items += _read_pairs(name.lower(), folder, folder / "GroundTruth")
        elif (folder / "images").is_dir():
            items += _read_pairs(folder.name, folder / "images", folder / "masks")
    if not items:
        raise DatasetFormatError(f"{root} holds no <Class>100/GroundTruth or <class>/images + <class>/masks folders")
    return items
