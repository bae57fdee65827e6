"""ONNX Runtime on one input, one thread, batch 1: one warm-up run, then N timed-by-count runs.

    ortrun.py MODEL.onnx N "2 1234 ... 3"

Run under qemu-user with the instruction-counting plugin for N = 1 and N = 5 (benches/pi-peers.sh does): the
difference of the two counts divided by 4 is one classification, with the interpreter's start, the imports and
the session's creation cancelled out. Attention mask all ones, token types all 0 (what `pi-classify --ids` runs).
"""

import sys

import numpy as np
import onnxruntime as ort

model, runs, ids = sys.argv[1], int(sys.argv[2]), [int(t) for t in sys.argv[3].replace(",", " ").split()]
ort.set_default_logger_severity(3)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
feed = {
    "input_ids": np.array([ids], np.int64),
    "attention_mask": np.ones((1, len(ids)), np.int64),
    "token_type_ids": np.zeros((1, len(ids)), np.int64),
}
names = {i.name for i in session.get_inputs()}
feed = {k: v for k, v in feed.items() if k in names}
logits = session.run(None, feed)[0]
for _ in range(runs):
    logits = session.run(None, feed)[0]
print("onnxruntime", ort.__version__, "runs:", runs, "logits:", logits.ravel().tolist(), flush=True)
