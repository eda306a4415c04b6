"""The type stubs (xlmr/__init__.pyi) name every public function and method of the package
with the same parameters, so editors complete what is really there."""

import ast
import inspect
import os

import xlmr


def stub_signatures():
    with open(os.path.join(os.path.dirname(xlmr.__file__), "__init__.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out = {}

    def params(fn):
        a = fn.args
        names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
        return [n for n in names if n != "self"] + (["**" + a.kwarg.arg] if a.kwarg else [])

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = params(node)
        elif isinstance(node, ast.ClassDef):
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef):
                    out[f"{node.name}.{fn.name}"] = params(fn)  # overloads agree; the last wins
    return out


def real_params(fn):
    ps = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    return [("**" + p.name) if p.kind is p.VAR_KEYWORD else p.name for p in ps]


def test_stubs_match_the_package():
    stubs = stub_signatures()
    public = {"convert": xlmr.convert}
    for name, member in vars(xlmr.Model).items():
        if not name.startswith("_") and inspect.isfunction(member):
            public[f"Model.{name}"] = member
    public["Model.__init__"] = xlmr.Model.__init__
    for name, fn in public.items():
        assert name in stubs, f"{name} is missing from __init__.pyi"
        assert stubs[name] == real_params(fn), f"{name}: stub {stubs[name]} != real {real_params(fn)}"
