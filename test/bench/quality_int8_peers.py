#!/usr/bin/env python3
"""How far 8-bit peers move all-MiniLM-L6-v2's sentence embeddings, to read pgbert's int8 against.

    python test/bench/quality_int8_peers.py MINILM_DIR test/fixtures/minilm_reference.safetensors

The reference fixture holds 200 sentences as token ids (the model's own tokenizer, truncated
at 128 or 512) and sentence-transformers' float32 embeddings of them. This runs each
sentence through ONNX Runtime (the model exported by torch.onnx and fused, as
bench_encoder_peers.py does), in float32 and after onnxruntime.quantization.quantize_dynamic
(signed 8-bit weights per output channel in 7 bits, reduce_range, as ONNX Runtime advises for
CPUs without VNNI; unsigned 8-bit activations with one scale per tensor), and through PyTorch's
dynamic quantization of the Linear layers, mean-pools the last hidden state and prints the
smallest and the mean cosine against the reference. build/test_model prints the same two
numbers for pgbert's int8 (bt_model_quantize).
"""
import copy
import os
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoModel


def cosines(emb, want):
    """Cosine of each row pair."""
    dot = (emb * want).sum(1)
    return dot / np.sqrt((emb * emb).sum(1) * (want * want).sum(1))


def main():
    model_dir, ref_path = sys.argv[1], sys.argv[2]
    ref = load_file(ref_path)
    ids, offsets, want = ref["ids"], ref["offsets"], ref["embeddings"]
    sentences = [ids[a:b].astype(np.int64)[None, :] for a, b in zip(offsets[:-1], offsets[1:])]
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = AutoModel.from_pretrained(model_dir).eval()

    def mean_pool(hidden):
        return hidden[0].mean(0)

    results = []

    def run_torch(name, m):
        with torch.inference_mode():
            emb = np.stack([mean_pool(m(input_ids=torch.from_numpy(s)).last_hidden_state.numpy())
                            for s in sentences])
        results.append((name, cosines(emb, want)))

    run_torch("pytorch %s float32" % torch.__version__, model)
    qmodel = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    run_torch("pytorch %s dynamic int8 (Linear layers)" % torch.__version__, qmodel)

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    tmp = tempfile.mkdtemp()
    raw, fused, q8 = (os.path.join(tmp, n) for n in ("model.onnx", "model_opt.onnx", "model_int8.onnx"))

    class Encoder(torch.nn.Module):
        """Keyword call of the model, for the exporter."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    dummy = (torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long))
    torch.onnx.export(Encoder(copy.deepcopy(model)), dummy, raw, input_names=["input_ids", "attention_mask"],
                      output_names=["output"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                    "output": {0: "batch", 1: "seq"}})
    cfg = model.config
    optimizer.optimize_model(raw, model_type="bert", num_heads=cfg.num_attention_heads,
                             hidden_size=cfg.hidden_size).save_model_to_file(fused)
    import onnx
    # the fused graph's custom ops (BiasGelu, SkipLayerNorm) defeat shape inference: say what the tensors are
    quantize_dynamic(fused, q8, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    for name, path in (("onnxruntime %s float32" % ort.__version__, fused),
                       ("onnxruntime %s dynamic int8" % ort.__version__, q8)):
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        emb = np.stack([mean_pool(sess.run(None, {"input_ids": s, "attention_mask": np.ones_like(s)})[0])
                        for s in sentences])
        results.append((name, cosines(emb, want)))

    print("| implementation | sentences | min cosine | mean cosine |")
    print("|---|---:|---:|---:|")
    for name, cos in results:
        print("| %s | %d | %.5f | %.5f |" % (name, len(cos), cos.min(), cos.mean()))


if __name__ == "__main__":
    main()
