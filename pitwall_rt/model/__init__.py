"""Race intelligence on top of compute: the tire-wear model and its inputs.

Following the data:

* :mod:`.features` - per-lap / per-sector feature windows (pure numpy, runs
  inside ``compute_batch``); owns the feature list and order;
* :mod:`.train` - ``python -m pitwall_rt.model.train``: simulated stints ->
  wear labels -> gradient-boosted trees -> ``tire_wear.onnx`` + model card;
* :mod:`.infer` - the ONNX session (one per pool worker), batched inference,
  laps-to-cliff, and the per-tick job the compute pool runs;
* :mod:`.explain` - occlusion attributions -> radio-ready sentences.

The shipped model and its card sit next to this file (package data).
"""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
MODEL_PATH = MODEL_DIR / "tire_wear.onnx"
CARD_JSON_PATH = MODEL_DIR / "model_card.json"
CARD_MD_PATH = MODEL_DIR / "MODEL_CARD.md"
MODEL_NAME = "tire_wear v1"

__all__ = ["CARD_JSON_PATH", "CARD_MD_PATH", "MODEL_DIR", "MODEL_NAME", "MODEL_PATH"]
