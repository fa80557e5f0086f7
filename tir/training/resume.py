"""`tir train --resume`: the saved run config, with only the settings a resume may change changed.

Device and worker count may change freely; ``--epochs`` may grow past what the run was made for, which
extends a finished run (its warm-up + cosine schedule is then stretched to the new length). Any other
option that differs from the saved config is refused: a resume that silently ignored it would train
something other than what was asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tir.errors import UserError

# settings a resume may change; out and name only say which run to resume
FREE = frozenset({"device", "num_workers", "out", "name"})


def given_keys(config_file: str | Path | None, overrides: Iterable[str], options: Mapping[str, Any]) -> set[str]:
    """The config keys the user set explicitly: in the recipe, as options (not None) or with --set."""
    from tir.training.config import parse_override, read_yaml

    keys = set(read_yaml(config_file)) if config_file is not None else set()
    keys |= {key for key, value in options.items() if value is not None}
    keys |= {parse_override(text)[0][0] for text in overrides}
    return keys


def resume_config(config: Mapping[str, Any], given: set[str], saved: Mapping[str, Any], done: int) -> dict[str, Any]:
    """The config to resume with: ``saved`` plus the allowed changes from ``config`` (the options given now).

    ``done`` is the number of epochs the run's last.pt has completed.
    """
    changed = [key for key in sorted(given - FREE - {"epochs"}) if config.get(key) != saved.get(key)]
    if changed:
        detail = "; ".join(f"{key}: saved {saved.get(key)!r}, given {config.get(key)!r}" for key in changed)
        raise UserError(f"--resume continues the run with its saved config, but these options differ: {detail}. "
                        "Only --device, --workers and a larger --epochs may change; drop the others, "
                        "or start a new run with another --name")
    epochs = int(saved["epochs"])
    if "epochs" in given and config["epochs"] != epochs:
        if config["epochs"] < done:
            raise UserError(f"--epochs {config['epochs']} is below the {done} epochs this run has already trained; "
                            f"pass --epochs {done + 1} or more to extend it")
        epochs = int(config["epochs"])
    if done >= epochs:
        raise UserError(f"the run has already trained all its {epochs} epochs; pass --epochs N (more than {epochs}) "
                        "with --resume to extend it, or evaluate it with `tir eval`")
    return {**saved, "device": config["device"], "num_workers": config["num_workers"], "epochs": epochs}


def extension_note(saved_epochs: int, epochs: int, done: int) -> str | None:
    """The log line for a resume that extends a run past the epochs it was made for, else None."""
    if epochs == saved_epochs:
        return None
    return (f"extending the run from {saved_epochs} to {epochs} epochs: from epoch {done + 1} the learning rate "
            f"follows the warm-up + cosine schedule made for {epochs} epochs")
