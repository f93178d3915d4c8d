"""Training: a resolved config and the arrays in, a trained model (and its file) out.

    lpa.train.job             train@<trial> as one call: TrainJob (what a run needs, read and checked
                              before training), train_and_save (train, log, write the model file)
    lpa.train.engine          the loop: set-up, resume, one epoch, validation (data on the device,
                              batched augmentation, no per-step host sync); forward, predict
    lpa.train.device          pick_device (no silent CPU fallback), precision per device, CUDA math
    lpa.train.augment         batched crop + flip on the device
    lpa.train.dropout         counter-based dropout masks (CPU)
    lpa.train.small_map_conv  weight gradients of small-map convolutions as one GEMM (CPU, bf16)
    lpa.train.module_swap     replace_modules: the one walk that swaps submodules
    lpa.train.distributed     one run on several processes (DDP, synchronised BatchNorm, rank-0 writes,
                              run_on_every_rank)
    lpa.train.checkpoint      resumable state outside DVC, keyed on config and data
    lpa.train.modelfile       model.pt: weights + resolved config + preprocessing; TrainedModel
    lpa.train.warm_start      init_from: a parent run's weights for a finetune
"""
