"""Inference speed and memory of the served model, against the naive way, measured in one run.

    python -m benchmarks.inference [--model VERSION] [--json]

The naive way is what tools of this kind usually do: load the Keras file for every image and
call `model.predict` on it. BrainScan keeps an ONNX Runtime session for the life of the worker
and gets its heatmap as a second output of the same forward pass. Every figure below comes from
this run on this machine; compare ratios, not absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import percentile, report, run_python

IMAGES = 64
BATCH = 8  # the worker's default BRAINSCAN_INFERENCE_BATCH: runtimes are compared at 1 and at this size
# The served version and the baseline take turns this many times each: timed one after the other, the
# second ran 18 % faster here (a warmer machine), which a ratio of two equal graphs must not show.
TURNS = 6


def sample_pngs(count: int = IMAGES) -> list[bytes]:
    """Synthetic 224x224 slices encoded as PNG, the size of the shared dataset's images."""
    from PIL import Image

    from ml.phantoms import make_phantom

    out = []
    for seed in range(count):
        buffer = io.BytesIO()
        Image.fromarray(np.rint(make_phantom(seed, seed % 2 == 0) * 255).astype(np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def timed_network(run, size: int, batch: int, iterations: int) -> list[float]:
    """Milliseconds per call of the network alone on a batch of blank slices."""
    images = np.zeros((batch, size, size, 1), np.float32)
    run(images)
    out = []
    for _ in range(iterations):
        started = time.perf_counter()
        run(images)
        out.append((time.perf_counter() - started) * 1000)
    return out


def latency_samples(predictor, pngs: list[bytes], iterations: int) -> tuple[list[float], dict[str, list[float]]]:
    """Milliseconds from PNG bytes to the heatmap PNG, one slice at a time, in all and by stage."""
    from ml.explain import heatmap_png
    from ml.imaging import read_image

    latency = []
    stages = {name: [] for name in ("decode", "preprocess", "gate", "inference", "heatmap", "heatmap_png")}
    for i in range(iterations):
        data = pngs[i % len(pngs)]
        started = time.perf_counter()
        gray = read_image(data)
        decoded = time.perf_counter()
        assessment = predictor.assess([gray], with_features=False)[0]
        assessed = time.perf_counter()
        heatmap_png(assessment.heatmap)
        finished = time.perf_counter()
        latency.append((finished - started) * 1000)
        stages["decode"].append((decoded - started) * 1000)
        stages["heatmap_png"].append((finished - assessed) * 1000)
        for name in ("preprocess", "gate", "inference", "heatmap"):
            stages[name].append(assessment.timings_ms[name])
    return latency, stages


def warm_predictor(version, pngs: list[bytes], threads: int):
    from ml.imaging import read_image
    from ml.predictor import Predictor

    predictor = Predictor(version, threads=threads)
    predictor.assess([read_image(pngs[0])])
    return predictor


def serving_figures(version, predictor, pngs: list[bytes], iterations: int, threads: int) -> dict:
    from ml.imaging import read_image

    latency, stages = latency_samples(predictor, pngs, iterations)
    heatmap, features = stages["heatmap"], []
    for i in range(min(iterations, 100)):
        gray = read_image(pngs[i % len(pngs)])
        features.append(predictor.assess([gray])[0].timings_ms["features"])
    network = timed_network(predictor.network, predictor.image_size, 1, iterations)
    network_batch = timed_network(predictor.network, predictor.image_size, BATCH, max(iterations // BATCH, 20))
    throughput = {}
    grays = [read_image(p) for p in pngs]
    for size in (1, 2, 4, 8, 16, 32):
        rounds = max(3, 128 // size)
        started = time.perf_counter()
        for r in range(rounds):
            predictor.assess([grays[(r * size + k) % len(grays)] for k in range(size)], with_features=False)
        throughput[size] = rounds * size / (time.perf_counter() - started)
    best = max(throughput, key=throughput.get)
    return {
        "latency_ms_p50": percentile(latency, 50), "latency_ms_p95": percentile(latency, 95),
        "inference_ms_p50": percentile(network, 50),
        f"network_batch{BATCH}_ms_per_image": percentile(network_batch, 50) / BATCH,
        "heatmap_ms_p50": percentile(heatmap, 50),
        "features_ms_p50": percentile(features, 50), "throughput_ips": throughput[best], "best_batch": best,
        "throughput_by_batch": {str(k): round(v, 1) for k, v in throughput.items()},
        "stage_ms_p50": {name: percentile(values, 50) for name, values in stages.items()},
        "served_file": predictor.serving["file"], "served_runtime": predictor.serving["runtime"],
        "served_precision": predictor.serving["precision"],
        **int8_figures(version, predictor, iterations, threads),
    }


def against_baseline(predictor, other, pngs: list[bytes], iterations: int, threads: int) -> dict:
    """Both versions' latency, measured in alternating blocks (ABBA...) so that neither gets the quieter machine."""
    predictors = {"served": predictor, "baseline": warm_predictor(other, pngs, threads)}
    samples = {"served": [], "baseline": []}
    block = max(iterations // TURNS, 10)
    for turn in range(TURNS):
        for name in ("served", "baseline") if turn % 2 == 0 else ("baseline", "served"):
            samples[name] += latency_samples(predictors[name], pngs, block)[0]
    served, baseline = percentile(samples["served"], 50), percentile(samples["baseline"], 50)
    return {"baseline_version": other.name, "baseline_latency_ms_p50": baseline,
            "served_latency_ms_p50_alternating": served, "latency_vs_baseline": served / baseline,
            "baseline_turns": TURNS}


def int8_figures(version, predictor, iterations: int, threads: int) -> dict:
    """The int8 graph's network time beside fp32's, same run, when the version has one (served or not)."""
    import onnxruntime

    from ml.quantize import INT8_FILE

    path = version.path / INT8_FILE
    if not path.is_file():
        return {}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    int8 = timed_network(lambda batch: session.run(None, {name: batch}), predictor.image_size, 1, iterations)
    fp32_path = version.path / "model.onnx"
    fp32_session = onnxruntime.InferenceSession(str(fp32_path), options, providers=["CPUExecutionProvider"])
    fp32_name = fp32_session.get_inputs()[0].name
    fp32 = timed_network(lambda batch: fp32_session.run(None, {fp32_name: batch}), predictor.image_size, 1,
                         iterations)
    return {"int8_inference_ms_p50": percentile(int8, 50), "fp32_inference_ms_p50": percentile(fp32, 50),
            "int8_speedup_vs_fp32": percentile(fp32, 50) / percentile(int8, 50)}


CHILD_LOAD_AND_RSS = """
import json, time
started = time.perf_counter()
from ml.predictor import Predictor
from ml.registry import ModelRegistry
version = ModelRegistry({root!r}).get({name!r})
predictor = Predictor(version, threads={threads})
load_s = time.perf_counter() - started
from benchmarks.inference import sample_pngs
from ml.explain import heatmap_png
from ml.imaging import read_image
for data in sample_pngs(32) * 3:
    heatmap_png(predictor.assess([read_image(data)])[0].heatmap)
# VmHWM, not getrusage's ru_maxrss: that one survives exec, so it would report the parent's peak.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"load_s": load_s, "rss_mb": peak_kb / 1024}}))
"""

CHILD_TENSORFLOW = """
import json, os, time, tempfile
import numpy as np
import tensorflow as tf
import keras
from ml.model import load_serving_model
from ml.imaging import read_image
from ml.preprocess import preprocess
from benchmarks.inference import sample_pngs

tf.config.threading.set_intra_op_parallelism_threads({threads})
pngs = sample_pngs(16)
path = {keras_path!r}
naive = []
for i in range({naive_iterations}):
    started = time.perf_counter()
    model = keras.models.load_model(path)
    model.predict(preprocess(read_image(pngs[i % len(pngs)]), {image_size}, {reference!r})[np.newaxis], verbose=0)
    naive.append((time.perf_counter() - started) * 1000)

serving = load_serving_model(path)
x = np.stack([preprocess(read_image(p), {image_size}, {reference!r}) for p in pngs])
one = x[:1]

def timed(fn, n=100):
    fn()
    out = []
    for _ in range(n):
        started = time.perf_counter(); fn(); out.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(out, 50))

predict_ms = timed(lambda: serving.predict(one, verbose=0), 30)
compiled = tf.function(lambda batch: serving(batch, training=False), reduce_retracing=True)
tf_function_ms = timed(lambda: compiled(one))

# Grad-CAM the usual way: gradients of the network's logit with respect to its last encoder feature maps.
network = serving.get_layer("brainscan_network")
last_relu = [l for l in network.layers if l.name.endswith("_relu")][-1]
grad_model = keras.Model(network.input, [last_relu.output, network.output])
def gradcam():
    with tf.GradientTape() as tape:
        maps, cell_logits = grad_model(one, training=False)
        logit = tf.reduce_mean(cell_logits)
    grads = tape.gradient(logit, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy()
gradcam_ms = timed(gradcam, 50)

litert = {{}}
try:
    from ai_edge_litert.interpreter import Interpreter
    with tempfile.TemporaryDirectory() as tmp:
        serving.export(tmp, verbose=False)
        flat = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        quantised = converter.convert()
    for label, content in (("litert_fp32", flat), ("litert_int8", quantised)):
        interpreter = Interpreter(model_content=content, num_threads={threads})
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        prob_out = [o for o in interpreter.get_output_details() if list(o["shape"]) == [1, 1]][0]
        def run(image=one):
            interpreter.set_tensor(inp["index"], image); interpreter.invoke()
            return interpreter.get_tensor(prob_out["index"]).reshape(-1)
        litert[label + "_ms_p50"] = timed(run)
        batch_input = x[:{batch}]
        interpreter.resize_tensor_input(inp["index"], list(batch_input.shape))
        interpreter.allocate_tensors()
        litert[label + "_batch{batch}_ms_per_image"] = timed(lambda: run(batch_input), 30) / {batch}
        interpreter.resize_tensor_input(inp["index"], list(one.shape))
        interpreter.allocate_tensors()
        reference = serving.predict(x, verbose=0)[0].reshape(-1)
        litert[label + "_max_difference"] = float(max(abs(run(x[i:i + 1])[0] - reference[i]) for i in range(len(x))))
except Exception as error:
    litert["litert_error"] = type(error).__name__ + ": " + str(error)[:200]

print(json.dumps({{"naive_latency_ms_p50": float(np.percentile(naive, 50)), "keras_predict_ms_p50": predict_ms,
                  "tf_function_ms_p50": tf_function_ms, "gradcam_gradient_ms_p50": gradcam_ms, **litert}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model version (default: the active one)")
    parser.add_argument("--registry", default=None, help="model registry folder (default: models/)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--naive-iterations", type=int, default=12)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BRAINSCAN_INFERENCE_THREADS", "1")))
    parser.add_argument("--baseline", metavar="VERSION_FOLDER", default=None,
                        help="another version (an earlier release) whose serving latency is measured in the same run")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    from benchmarks.common import ROOT
    from ml.registry import ModelRegistry

    registry = ModelRegistry(args.registry or ROOT / "models")
    version = registry.get(args.model) if args.model else registry.active()
    pngs = sample_pngs()
    predictor = warm_predictor(version, pngs, args.threads)
    served = serving_figures(version, predictor, pngs, args.iterations, args.threads)
    baseline = {}
    if args.baseline:
        folder = Path(args.baseline)
        baseline = against_baseline(predictor, ModelRegistry(folder.parent).get(folder.name), pngs, args.iterations,
                                    args.threads)
    child = run_python(CHILD_LOAD_AND_RSS.format(root=str(registry.root), name=version.name, threads=args.threads))
    tf_side = run_python(CHILD_TENSORFLOW.format(keras_path=str(version.keras_path), threads=args.threads,
                                                 image_size=int(version.card["hyperparameters"]["image_size"]),
                                                 reference=predictor.intensity_reference,
                                                 naive_iterations=args.naive_iterations, batch=BATCH))
    runtimes = {"onnxruntime": served["inference_ms_p50"], "tf.function": tf_side["tf_function_ms_p50"],
                "keras.predict": tf_side["keras_predict_ms_p50"]}
    batched = {"onnxruntime": served[f"network_batch{BATCH}_ms_per_image"]}
    if "litert_fp32_ms_p50" in tf_side:
        runtimes["litert_fp32"] = tf_side["litert_fp32_ms_p50"]
        batched["litert_fp32"] = tf_side[f"litert_fp32_batch{BATCH}_ms_per_image"]
    figures = {
        "model_version": version.name, "threads": args.threads, **served, **child, **tf_side,
        "naive_latency_ms_p50": tf_side["naive_latency_ms_p50"],
        "speedup_vs_naive": tf_side["naive_latency_ms_p50"] / served["latency_ms_p50"],
        "heatmap_share_cam": served["heatmap_ms_p50"] / served["latency_ms_p50"],
        "heatmap_share_gradcam_gradient": tf_side["gradcam_gradient_ms_p50"] / (
            served["latency_ms_p50"] - served["heatmap_ms_p50"] + tf_side["gradcam_gradient_ms_p50"]),
        "fastest_fp32_runtime": min(runtimes, key=runtimes.get), "runtime_ms_p50": runtimes,
        f"fastest_fp32_runtime_batch{BATCH}": min(batched, key=batched.get),
        f"runtime_batch{BATCH}_ms_per_image": batched, **baseline,
    }
    rows = [
        ("model", version.name, ""),
        ("served", f"{figures['served_file']} ({figures['served_runtime']}, {figures['served_precision']})", ""),
        ("load_s", figures["load_s"], "fresh process: imports + ONNX session"),
        ("latency_ms_p50", figures["latency_ms_p50"], "decode + preprocess + network + heatmap PNG"),
        ("latency_ms_p95", figures["latency_ms_p95"], ""),
        ("inference_ms_p50", figures["inference_ms_p50"], "network only (ONNX Runtime)"),
        ("heatmap_ms_p50", figures["heatmap_ms_p50"], f"class activation map, {figures['heatmap_share_cam']:.0%} "
                                                       "of the latency"),
        ("gradcam_gradient_ms_p50", figures["gradcam_gradient_ms_p50"],
         f"Grad-CAM by gradients in TF: would be {figures['heatmap_share_gradcam_gradient']:.0%} of the latency"),
        *[(f"stage {name}", value, "median ms of one slice") for name, value in figures["stage_ms_p50"].items()],
        ("features_ms_p50", figures["features_ms_p50"], "13 texture features (beside the latency)"),
        ("throughput_ips", figures["throughput_ips"], f"at batch {figures['best_batch']}"),
        ("rss_mb", figures["rss_mb"], "peak RSS of a serving process"),
        ("naive_latency_ms_p50", figures["naive_latency_ms_p50"], "load_model + predict per image"),
        ("speedup_vs_naive", figures["speedup_vs_naive"], "naive / BrainScan"),
        *[(f"runtime {name}", value, "network only, batch 1") for name, value in runtimes.items()],
        ("fastest_fp32_runtime", figures["fastest_fp32_runtime"], ""),
        *[(f"runtime {name}", value, f"network only, per image at batch {BATCH}") for name, value in batched.items()],
        (f"fastest_fp32_runtime_batch{BATCH}", figures[f"fastest_fp32_runtime_batch{BATCH}"], ""),
    ]
    if baseline:
        rows += [("baseline_latency_ms_p50", baseline["baseline_latency_ms_p50"], baseline["baseline_version"]),
                 ("served_latency_ms_p50_alternating", baseline["served_latency_ms_p50_alternating"],
                  f"this version, in {TURNS} turns with the baseline"),
                 ("latency_vs_baseline", baseline["latency_vs_baseline"], "this version / the baseline, same turns")]
    if "int8_inference_ms_p50" in figures:
        rows += [("int8_inference_ms_p50", figures["int8_inference_ms_p50"], "the int8 graph, network only"),
                 ("fp32_inference_ms_p50", figures["fp32_inference_ms_p50"], "the fp32 graph, same run"),
                 ("int8_speedup_vs_fp32", figures["int8_speedup_vs_fp32"], "")]
    if "litert_int8_ms_p50" in figures:
        rows.append(("litert_int8_ms_p50", figures["litert_int8_ms_p50"],
                     f"dynamic-range int8; max probability difference {figures['litert_int8_max_difference']:.2e}"))
    report(f"Inference benchmark ({args.threads} thread(s))", rows, figures, args.json)


if __name__ == "__main__":
    main()
