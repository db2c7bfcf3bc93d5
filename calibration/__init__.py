"""Real images for verification and int8 calibration, preprocessed the way each variant expects."""
