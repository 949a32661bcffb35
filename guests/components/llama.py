"""llama as a component: WasmEdge's basic GGML flow over wasi:nn (WIT), for 0.2.0-rc-2024-10-28 and -08-19.

    llama [--metadata JSON] [--chat] [--usage] [--model FILE] NAME PROMPT

The prompt goes in as a U8 tensor named "prompt", the metadata JSON (optional) as "metadata"; the text
comes back as output "output" and the usage JSON as "metadata". It prints what the C guest
guests/src/llama.c prints for the same flow, so the two paths can be compared byte for byte. WasmEdge's
errnos 101 and 102 arrive as runtime-error with the cause in the error's data.
"""

import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import graph, inference, tensor

CHATML = "<|im_start|>system\nYou are a tiny llama.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def u8(data):
    return tensor.Tensor([len(data)], tensor.TensorType.U8, data)


def error_text(err):
    e = err.value
    return f"{e.code().name.lower().replace('_', '-')}: {e.data()}"


def generate(ctx, prompt, metadata):
    inputs = ([("metadata", u8(metadata))] if metadata else []) + [("prompt", u8(prompt))]
    if hasattr(inference.GraphExecutionContext, "set_input"):  # 0.2.0-rc-2024-08-19
        for name, value in inputs:
            ctx.set_input(name, value)
        ctx.compute()
        return ctx.get_output("output").data(), ctx.get_output("metadata").data()
    outputs = dict(ctx.compute(inputs))  # 0.2.0-rc-2024-10-28
    return outputs["output"].data(), outputs["metadata"].data()


class Run(exports.Run):
    def run(self):
        args = sys.argv[1:]
        metadata, model, chat, usage, positional = b"", None, False, False, []
        while args:
            flag = args.pop(0)
            if flag == "--metadata" and args:
                metadata = args.pop(0).encode()
            elif flag == "--model" and args:
                model = args.pop(0)
            elif flag == "--chat":
                chat = True
            elif flag == "--usage":
                usage = True
            elif not flag.startswith("-"):
                positional.append(flag)
            else:
                print("usage: llama [--metadata JSON] [--chat] [--usage] [--model FILE] NAME PROMPT", file=sys.stderr)
                raise Err(None)
        if len(positional) != (1 if model else 2):
            print("llama: need a model NAME (or --model FILE) and a PROMPT", file=sys.stderr)
            raise Err(None)
        prompt = positional[-1]
        if chat:
            prompt = CHATML.format(prompt)
        try:
            if model:
                with open(model, "rb") as f:
                    g = graph.load([f.read()], graph.GraphEncoding.GGML, graph.ExecutionTarget.CPU)
            else:
                g = graph.load_by_name(positional[0])
            ctx = g.init_execution_context()
            text, counts = generate(ctx, prompt.encode(), metadata)
        except Err as err:
            print(f"llama: wasi:nn error: {error_text(err)}", file=sys.stderr)
            raise Err(None) from None
        sys.stdout.buffer.write(bytes(text) + b"\n")
        if usage:
            sys.stdout.buffer.write(bytes(counts) + b"\n")
        sys.stdout.flush()
