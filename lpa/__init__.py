"""lpa: a reproducibility pipeline for "Learn To Pay Attention" (Jetley et al., ICLR 2018).

The packages are layers; a module imports its own layer and the ones below it, never one above
(tests/test_imports.py holds the order, LAYERS, and checks every import against it):

    stages/, lpa.predict   entry points: argv -> declared params -> one call into lpa -> files
    lpa.tools              bench, estimate, the multi-device launcher and its slots
    lpa.report             run records -> tables, intervals, figures (torch-free)
    lpa.experiments        evaluate, predict, FGSM robustness, transfer, segmentation
    lpa.train              the engine, checkpoints, the model file, distributed training
    lpa.models             the attention module, the backbones, the registry
    lpa.data               official sources in, contract-format arrays out
    lpa.config             params.yaml -> validated, resolved run configs (torch-free)
    lpa.errors, lpa.files, lpa.layout, lpa.thumbnails
                           leaves: user errors, atomic writes, where outputs live, the
                           segmentation thumbnails' format

Each package's docstring is its map. Every package __init__ is deliberately light, so that a
stage's import closure, and with it its dvc.yaml deps, stays its own.
"""
