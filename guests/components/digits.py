"""digits as a component: the demo guest in Python, for wasi:nn 0.2.0-rc-2024-10-28 and -08-19 alike.

    digits [--name NAME | --model FILE [--model FILE]] [--encoding ENC] [--target T]
           [--input NAME] [--output NAME] IMAGES_DIR

Built with componentize-py against either world in wit/ (see build.py). Prints exactly what the C
guest guests/src/digits.c prints, so the two paths can be compared line by line. Every module it uses is
imported at the top: componentize-py bundles only what is imported when it builds the component.
"""

import struct
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import graph, inference, tensor


def read_pgm(path):
    with open(path) as f:
        tokens = [t for line in f if not line.startswith("#") for t in line.split()]
    width, height, maxval = int(tokens[1]), int(tokens[2]), int(tokens[3])
    return [int(t) / maxval for t in tokens[4 : 4 + width * height]]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def f32_bytes(values):
    return struct.pack(f"<{len(values)}f", *values)


def error_text(err):
    e = err.value
    return f"{e.code().name.lower().replace('_', '-')}: {e.data()}"


def classify(ctx, pixels, input_name, output_name):
    data = tensor.Tensor([1, 64], tensor.TensorType.FP32, f32_bytes(pixels))
    if hasattr(inference.GraphExecutionContext, "set_input"):  # 0.2.0-rc-2024-08-19
        ctx.set_input(input_name, data)
        ctx.compute()
        out = ctx.get_output(output_name)
    else:  # 0.2.0-rc-2024-10-28
        outputs = ctx.compute([(input_name, data)])
        out = dict(outputs).get(output_name) or outputs[0][1]
    raw = out.data()
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class Run(exports.Run):
    def run(self):
        args = sys.argv[1:]
        name, models, encoding, target, input_name, output_name, folder = (
            "digits",
            [],
            "onnx",
            "cpu",
            "pixels",
            "",
            None,
        )
        while args:
            flag = args.pop(0)
            if flag in ("--name", "--model", "--encoding", "--target", "--input", "--output") and args:
                value = args.pop(0)
                if flag == "--name":
                    name = value
                elif flag == "--model":
                    models.append(value)
                elif flag == "--encoding":
                    encoding = value
                elif flag == "--target":
                    target = value
                elif flag == "--input":
                    input_name = value
                else:
                    output_name = value
            elif not flag.startswith("-") and folder is None:
                folder = flag
            else:
                print(
                    "usage: digits [--name NAME | --model FILE...] [--encoding E] [--target T] IMAGES_DIR",
                    file=sys.stderr,
                )
                raise Err(None)
        try:
            if models:
                builders = [read_bytes(m) for m in models]
                g = graph.load(builders, graph.GraphEncoding[encoding.upper()], graph.ExecutionTarget[target.upper()])
                print(f"model: {models[0]} loaded through load()")
            else:
                g = graph.load_by_name(name)
                print(f'model: "{name}" loaded by name')
            ctx = g.init_execution_context()
            total = correct = 0
            with open(f"{folder}/labels.txt") as labels:
                for line in labels:
                    parts = line.split()
                    if len(parts) != 2:
                        continue
                    file, label = parts[0], int(parts[1])
                    probs = classify(ctx, read_pgm(f"{folder}/{file}"), input_name, output_name or "probabilities")
                    best = max(range(len(probs)), key=lambda k: probs[k])
                    total += 1
                    correct += best == label
                    miss = "" if best == label else "  MISS"
                    print(f"{file}: predicted {best} (p={probs[best]:.3f}), label {label}{miss}")
            print(f"accuracy: {correct}/{total} = {100.0 * correct / total:.1f}%")
        except Err as err:
            print(f"digits: wasi:nn error: {error_text(err)}", file=sys.stderr)
            raise Err(None) from None
