"""The package metadata declares ranges; constraints.txt pins the tested set inside them."""

from __future__ import annotations

import configparser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in config["options.extras_require"].values():
        lines += extra.splitlines()
    requirements = [Requirement(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]
    return {canonicalize_name(r.name): r for r in requirements}


def _pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins exact versions only: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_declared_dependency_is_pinned_within_its_range():
    declared, pinned = _declared(), _pinned()
    assert set(declared) <= set(pinned), f"not pinned in constraints.txt: {sorted(set(declared) - set(pinned))}"
    outside = {name: (pinned[name], str(r.specifier)) for name, r in declared.items() if pinned[name] not in r.specifier}
    assert not outside, f"constraints.txt pins outside setup.cfg's ranges: {outside}"


def test_the_torch_stack_is_a_range_not_an_exact_pin():
    declared = _declared()
    for name in ("torch", "torchvision", "open-clip-torch"):
        specifier = declared[name].specifier
        assert not any(spec.operator == "==" for spec in specifier), f"{name} is pinned exactly in setup.cfg"
        assert len(specifier) >= 2, f"{name} needs a lower and an upper bound"
