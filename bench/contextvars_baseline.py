"""CPython contextvars, the seed's anchor: ContextVar.get/set and copy_context, in ns/op.

Prints JSON: {"get": [ns...], "set": [...], "copy_context": [...]} with one figure per run.
"""
import contextvars
import json
import sys
import timeit

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
var = contextvars.ContextVar("v")
others = [contextvars.ContextVar(f"o{i}") for i in range(15)]
for o in others:
    o.set(1)
var.set(1)  # 16 variables bound, as in the weft benchmarks


def per_op(stmt, number=1_000_000):
    return [t / number * 1e9 for t in timeit.repeat(stmt, globals=globals(), number=number, repeat=runs)]


print(json.dumps({
    "get": per_op("var.get()"),
    "set": per_op("var.set(2)"),
    "copy_context": per_op("contextvars.copy_context()"),
}))
