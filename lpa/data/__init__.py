"""Datasets for lpa: official sources in, contract-format arrays out (docs/contracts.md, docs/data.md).

Deliberately empty: importing one module of the data layer (say `lpa.data.arrays` in the train
stage) runs only that module, so a stage's import closure (and its dvc.yaml deps) stays its own.

    lpa.config.data_options      the `data:` settings (DATASETS, TRANSFORMS, validation)
    lpa.data.pipeline    extract_dataset (download@<ds>), preprocess_dataset (preprocess@<ds>)
    lpa.data.arrays      the on-disk arrays: read_split, read_meta, fingerprint
    lpa.data.transforms  fitted transforms: fit_transform, load_transform, apply_saved_transform
    lpa.data.conversion  how a new picture becomes one of a dataset's images (lpa.experiments.predict, transfer)
    lpa.data.masks       image + mask datasets (Object Discovery, Weizmann Horse, image/mask folders, pasted_digits' test split)
    lpa.data.sources / fetch / cifar / svhn / digits / imagefolder / cub / caltech101 / pasted_digits   one source each
    lpa.errors           DataError and its subclasses (user errors: one line, exit 1)
"""
