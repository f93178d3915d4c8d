"""Experiments on a trained model: one job each, files out.

    lpa.experiments.evaluate         test-split metrics, per-class table, attention overlays
    lpa.experiments.metrics          pure numbers: top-k error, confusion, per-class accuracy
    lpa.experiments.figures          pure drawing: attention overlays, prediction figures
    lpa.experiments.predict          a user's pictures -> class and maps (`python -m lpa.predict`)
    lpa.experiments.robustness       FGSM curves
    lpa.experiments.pixel_transform  the preprocessing as a differentiable map from pixels (FGSM)
    lpa.experiments.features         the global feature g (or pooled features) of a trained model
    lpa.experiments.transfer         linear transfer to another dataset
    lpa.experiments.segmentation     weakly supervised segmentation from attention maps
"""
