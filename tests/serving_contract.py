"""Run in a fresh process by test_export.py: load every export the way TF-Serving does, with
keras, tensorflow_io, tensorflow_probability and tf_svdx made unimportable, call every signature
on the cases in CASES.npz and compare with the live models' outputs stored there.

usage: serving_contract.py SAVED_MODELS_ROOT CASES.npz  → prints one line per checked output."""

import sys

import numpy as np
import tensorflow as tf

# test_export.py runs this with `python -S` and PYTHONPATH = a copy of site-packages without
# these packages (links to everything else), so they are simply not installed here.
BLOCKED = {"keras", "tf_keras", "tensorflow_io", "tensorflow_probability", "tf_svdx"}

for module in BLOCKED:
    try:
        __import__(module)
    except ImportError:
        continue
    raise SystemExit(f"{module} could be imported")

root, cases_path = sys.argv[1], sys.argv[2]
cases = np.load(cases_path, allow_pickle=False)
loaded = {}
checked = 0
for key in sorted(cases.files):
    if not key.startswith("in/"):
        continue
    _, model, signature, name = key.split("/")
    if model not in loaded:
        versions = [p for p in __import__("pathlib").Path(root, model).iterdir()
                    if p.name.isdigit()]
        loaded[model] = tf.saved_model.load(str(max(versions, key=lambda p: int(p.name))))
for model, obj in loaded.items():
    for signature in obj.signatures:
        prefix = f"in/{model}/{signature}/"
        inputs = {k[len(prefix):]: tf.constant(cases[k]) for k in cases.files
                  if k.startswith(prefix)}
        if not inputs:
            raise SystemExit(f"no test case for {model}/{signature}")
        outputs = obj.signatures[signature](**inputs)
        for name, value in outputs.items():
            expected = cases[f"out/{model}/{signature}/{name}"]
            err = float(np.max(np.abs(value.numpy() - expected))) if expected.size else 0.0
            status = "ok" if err <= 1e-5 else "MISMATCH"
            print(f"{status} {model}/{signature}/{name} max|Δ|={err:.2e}")
            checked += 1
print(f"checked {checked} outputs")
