"""Configuration: params.yaml in, a validated and resolved run config out. Torch-free.

Deliberately empty, as every lpa package: importing one module runs only that module, so a
stage's import closure (and its dvc.yaml deps) stays its own.

    lpa.config.settings            Setting: one declaration per setting (type, allowed values, help)
    lpa.config.params              params.yaml views: DeclaredParams (undeclared reads fail), to_plain,
                                   the composition of conf/ with a suite (compose_params_yaml)
    lpa.config.model_options       the `model:` and `attention:` settings and each model's options
    lpa.config.train_options       the `train:` settings and their cross-checks
    lpa.config.data_options        the `data:` settings (DATASETS, TRANSFORMS)
    lpa.config.experiment_options  the `robustness:`, `transfer:` and `segmentation:` settings
    lpa.config.run                 check_params (every value, before any stage works),
                                   resolve_run / resolve_trial (the plain config a run trains with)
    lpa.config.stage_runner        run_stage: what every stage's main does (declared params, one
                                   `error:` line for a user error)
    python -m lpa.config           settings | compose | check
"""
