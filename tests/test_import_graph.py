"""The package's imports go one way: no module imports, at module level or inside
a function, anything that imports it back (docs/README.md, Layout)."""
import ast
import os
import os.path as osp

from training_utils import ROOT

PACKAGE = 'mmbackbones'


def module_name(path: str) -> str:
    rel = osp.relpath(path, ROOT)[:-len('.py')].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def package_modules():
    found = {}
    for folder, _, files in os.walk(osp.join(ROOT, PACKAGE)):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                found[module_name(path)] = path
    return found


def imports_of(name: str, path: str, modules) -> set:
    """Every package module ``name`` imports, anywhere in the file."""
    is_package = path.endswith('__init__.py')
    base = name.split('.') if is_package else name.split('.')[:-1]
    targets = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = '.'.join(base[:len(base) - node.level + 1])
                origin = f'{parent}.{node.module}' if node.module else parent
            else:
                origin = node.module or ''
            targets.add(origin)
            targets |= {f'{origin}.{alias.name}' for alias in node.names}
    return {t for t in targets if t in modules and t != name}


def test_no_import_cycle():
    modules = package_modules()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    # the package root only gathers the public names: everything sits under it
    graph = {n: {t for t in deps if t != PACKAGE} for n, deps in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = 'open'
        for target in sorted(graph[node]):
            if state.get(target) == 'open':
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 'done'

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, 'import cycles:\n' + '\n'.join(' -> '.join(c) for c in cycles)


def test_loading_layers_import_downward_only():
    """checkpoint/download (files) < weights (layouts, catalog) < loader < models."""
    modules = package_modules()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    bottom = {'mmbackbones.errors', 'mmbackbones.download', 'mmbackbones.checkpoint'}
    for name in bottom:
        assert graph[name] <= bottom, f'{name} imports {graph[name] - bottom}'
    layouts = {n for n in graph if n.startswith('mmbackbones.weights')}
    for name in layouts:
        above = {t for t in graph[name] if not (t in bottom or t in layouts
                                               or t == 'mmbackbones.registry')}
        assert not above, f'{name} imports {above}'
    assert not any(t.startswith(('mmbackbones.models', 'mmbackbones.api'))
                   for t in graph['mmbackbones.loader'])
    assert 'mmbackbones.loader' in graph['mmbackbones.models.base']


def defined_names(path: str) -> set:
    """Names a module defines or imports at its top level."""
    names = set()
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split('.')[0] for a in node.names}
        elif isinstance(node, (ast.Try, ast.If)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split('.')[0] for a in inner.names}
                elif isinstance(inner, (ast.FunctionDef, ast.ClassDef)):
                    names.add(inner.name)
    return names


def test_every_name_imported_from_the_package_exists():
    """Catches an import of a name that moved (e.g. the Detectron2 adapter's, which
    only runs where Detectron2 is installed)."""
    modules = package_modules()
    missing = []
    for name, path in modules.items():
        is_package = path.endswith('__init__.py')
        base = name.split('.') if is_package else name.split('.')[:-1]
        for node in ast.walk(ast.parse(open(path).read())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                parent = '.'.join(base[:len(base) - node.level + 1])
                origin = f'{parent}.{node.module}' if node.module else parent
            else:
                origin = node.module or ''
            if origin not in modules:
                continue
            known = defined_names(modules[origin])
            for alias in node.names:
                if alias.name not in known and f'{origin}.{alias.name}' not in modules:
                    missing.append(f'{name}: from {origin} import {alias.name}')
    assert not missing, missing
