#!/usr/bin/python3
"""Runs fastvision's model-preprocess.onnx with the onnx package's ReferenceEvaluator
(onnx >= 1.13, so the Debian 13 root's python3-onnx, not Debian 12's 1.12) on decoded
pixels, and compares with the probabilities `fastvision predict` gave.

usage: check_onnx_preprocess.py MODEL.onnx CASES_DIR
CASES_DIR/cases.json: [{"pixels": "0.raw", "height": H, "width": W, "probabilities": [...]}]
Prints one JSON line: the onnx version, cases, how many share the top class, the largest difference."""
import json
import os
import sys

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

model, folder = sys.argv[1], sys.argv[2]
cases = json.load(open(os.path.join(folder, 'cases.json')))
session = ReferenceEvaluator(model)
same, worst = 0, 0.0
for case in cases:
    raw = np.fromfile(os.path.join(folder, case['pixels']), dtype=np.uint8)
    pixels = raw.reshape(1, case['height'], case['width'], 3)
    (probs,) = session.run(None, {'pixels': pixels})
    want = np.asarray(case['probabilities'], dtype=np.float64)
    got = probs[0].astype(np.float64)
    same += int(np.argmax(got) == np.argmax(want))
    worst = max(worst, float(np.max(np.abs(got - want))))
print(json.dumps({'onnx': onnx.__version__, 'cases': len(cases), 'sameTop': same, 'worst': worst}))
