"""Context keys and file names the framework uses (0.27 names)."""

METADATA_FILENAME = "metadata.json"
BASELINE_CONDITION = "baseline"
REPLICATE_KEY = "replicate"
CONDITION_KEY = "condition"
SEED_USED_KEY = "seed_used"
