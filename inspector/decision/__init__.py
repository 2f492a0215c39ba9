"""From scores to a decision: calibrated thresholds, defect regions, the result of one inspection, overlays."""
