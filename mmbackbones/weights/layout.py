"""A foreign checkpoint layout as data: rename rules from the source's keys to
ours, the keys that are the source's classifier, and the backbone arguments
that rebuild the source's network."""
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

Replacement = Union[str, Callable[[re.Match], str]]


@dataclass(frozen=True)
class Rule:
    """``pattern`` (matched against a whole key) -> ``replacement`` (a
    ``re.sub`` template or a function of the match)."""
    pattern: str
    replacement: Replacement

    def apply(self, key: str) -> Optional[str]:
        match = re.fullmatch(self.pattern, key)
        if match is None:
            return None
        if callable(self.replacement):
            return self.replacement(match)
        return match.expand(self.replacement)


@dataclass(frozen=True)
class Layout:
    """One public network's checkpoint layout.

    Args:
        name: ``'<source>:<network>'``, e.g. ``'timm:darknet53'``.
        type: our backbone class name.
        kwargs: its arguments, which rebuild exactly the source's network.
        rules: key renames, first match wins.
        head: patterns of the source's classifier keys, set aside.
        top1: the source's published ImageNet top-1 and where it comes from.
    """
    name: str
    type: str
    kwargs: Dict
    rules: Tuple[Rule, ...]
    head: Tuple[str, ...] = ()
    top1: str = ''
    note: str = ''

    def is_head(self, key: str) -> bool:
        return any(re.fullmatch(p, key) for p in self.head)

    def rename(self, keys: Iterable[str]) -> Tuple[Dict[str, str], List[str], List[str]]:
        """``({source key: our key}, head keys, keys no rule matched)``."""
        mapping, head, unknown = {}, [], []
        for key in keys:
            if self.is_head(key):
                head.append(key)
                continue
            for rule in self.rules:
                new = rule.apply(key)
                if new is not None:
                    mapping[key] = new
                    break
            else:
                unknown.append(key)
        return mapping, head, unknown


def rules(*pairs: Tuple[str, Replacement]) -> Tuple[Rule, ...]:
    return tuple(Rule(p, r) for p, r in pairs)


#: the tail of a conv-norm unit, ``conv.weight`` or ``<bn|norm>.<param>``
UNIT = (r'(?P<unit>conv\.weight|(?:bn|norm)\.'
        r'(?:weight|bias|running_mean|running_var|num_batches_tracked))')


def renamed(template: str, **offsets: int) -> Callable[[re.Match], str]:
    """A replacement from the match's named groups: ``offsets`` are added to
    integer groups (``renamed('stage{s}.{m}.{unit}', s=1, m=1)``), and a
    :data:`UNIT` tail is written in our naming (``bn.`` -> ``norm.``)."""
    def replace(match: re.Match) -> str:
        values = {name: (int(value) + offsets[name] if name in offsets else value)
                  for name, value in match.groupdict().items()}
        if values.get('unit', '').startswith('bn.'):
            values['unit'] = 'norm.' + values['unit'][3:]
        return template.format(**values)
    return replace
