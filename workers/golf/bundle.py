"""The built-in trainer as one file: the train_gpt.py a submission carries, and the code bytes golfq counts.

The challenge counts code bytes from a single train_gpt.py, so golfq's trainer
modules are joined into one: each module's docstring becomes a comment, its
top-level imports are merged at the top (sorted), and imports between the
trainer's own modules are dropped, since their names now live in the same file.
The output depends only on the modules' source, so one trainer version always
gives the same bytes.
"""

from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path

PACKAGE = __name__.rpartition(".")[0]  # the trainer's package, whatever its import root
GOLF_DIR = Path(__file__).resolve().parent
# Dependency order: each module uses only names from the ones before it.
MODULES = ("shards", "loader", "bpb", "optim", "model", "quantize", "checkpoint", "train")
HEADER = '''"""golfq's built-in Parameter Golf trainer, in one file.

    torchrun --standalone --nproc_per_node=8 train_gpt.py
    python train_gpt.py                      # one process: a GPU, or DEVICE=cpu

Hyperparameters are environment variables under the challenge's names
(DATA_PATH, TOKENIZER_PATH, NUM_LAYERS, MAX_WALLCLOCK_SECONDS, ...).
Bundled from golfq's workers/golf/{modules}.py;
the code size it reports is this file's bytes.
"""
'''


class BundleError(ValueError):
    """The trainer's modules cannot be joined into one file as they are."""


def _docstring(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        return node.value.value
    return None


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


ImportedName = tuple[str, str | None]  # (name, asname) of one imported name


def _render_imports(plain: set[ImportedName], from_imports: dict[str, set[ImportedName]]) -> list[str]:
    def name(item: ImportedName) -> str:
        return item[0] if item[1] is None else f"{item[0]} as {item[1]}"

    lines = ["from __future__ import annotations", ""]
    lines += [f"import {name(item)}" for item in sorted(plain, key=lambda i: (i[0], i[1] or ""))]
    for module in sorted(from_imports):
        names = sorted(from_imports[module], key=lambda i: (i[0], i[1] or ""))
        lines.append(f"from {module} import {', '.join(name(item) for item in names)}")
    return lines


def bundle_source(golf_dir: Path = GOLF_DIR) -> str:
    """The single-file trainer, as text."""
    plain: set[ImportedName] = set()
    from_imports: dict[str, set[ImportedName]] = {}
    imported: dict[str, str] = {}  # bound name -> what it is bound to ("torch", "torch.Tensor", ...)
    defined: dict[str, str] = {}  # top-level name -> the module that defines it
    sections: list[str] = []
    for module in MODULES:
        source = (golf_dir / f"{module}.py").read_text(encoding="utf-8")
        tree = ast.parse(source)
        drop: set[int] = set()  # 0-based line numbers left out of the section
        comment: list[str] = []
        for index, node in enumerate(tree.body):
            span = range(node.lineno - 1, node.end_lineno or node.lineno)
            bindings: dict[str, str] = {}
            if index == 0 and (docstring := _docstring(node)) is not None:
                comment = ["# " + line if line.strip() else "#" for line in inspect.cleandoc(docstring).splitlines()]
                drop.update(span)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
                source_module = (node.module or "").removeprefix(PACKAGE + ".")
                renamed = any(a.asname not in (None, a.name) for a in node.names)
                if renamed or source_module not in MODULES[: MODULES.index(module)]:
                    raise BundleError(
                        f"{module}.py: `from {node.module} import ...` cannot be bundled (rename or order)"
                    )
                drop.update(span)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    raise BundleError(f"{module}.py: relative imports cannot be bundled")
                if node.module != "__future__":
                    names = from_imports.setdefault(node.module or "", set())
                    names.update((a.name, a.asname) for a in node.names)
                    bindings = {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
                drop.update(span)
            elif isinstance(node, ast.Import):
                plain.update((a.name, a.asname) for a in node.names)
                bindings = {
                    a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0] for a in node.names
                }
                drop.update(span)
            else:
                for name in _defined_names(node):
                    if defined.setdefault(name, module) != module:
                        raise BundleError(f"{module}.py and {defined[name]}.py both define {name!r}")
            for name, target in bindings.items():
                if imported.setdefault(name, target) != target:
                    raise BundleError(f"{module}.py binds {name!r} to {target}, another module to {imported[name]}")
        body = [line for number, line in enumerate(source.splitlines()) if number not in drop]
        sections.append("\n".join([f"# {'-' * 20} {module}.py {'-' * 20}", *comment, "", "\n".join(body).strip("\n")]))
    if clash := sorted(set(defined) & set(imported)):
        raise BundleError(f"{', '.join(clash)}: both imported and defined at the top level")
    header = HEADER.format(modules="{" + ",".join(MODULES) + "}")
    return "\n".join([header, *_render_imports(plain, from_imports), "", "", "\n\n\n".join(sections), ""])


@functools.cache
def bundle_bytes(golf_dir: Path = GOLF_DIR) -> int:
    """UTF-8 bytes of the single-file trainer (computed once per process)."""
    return len(bundle_source(golf_dir).encode("utf-8"))


def write_bundle(path: str | Path, golf_dir: Path = GOLF_DIR) -> int:
    """Write the single-file trainer to path; return its byte count."""
    data = bundle_source(golf_dir).encode("utf-8")
    Path(path).write_bytes(data)
    return len(data)
